"""Provider batch APIs (`model.batch: true`): OpenAI's Batch API and Anthropic's Message Batches,
billed at half the list price, with results within 24 hours.

APIBackend.sample() (api.py) hands its requests here instead of sending them one by one:

1. Each request (a prompt's body for some sample indices) gets a custom_id, a hash of the server,
   the body and the indices, so a re-run computes the same ids. Identical requests go out once.
2. The ledger: one JSON file per job under <cache dir>/batches/, written before any waiting: the
   request ids first, then (OpenAI) the uploaded file's id, then the job's id the moment the API
   returns it. A re-run (after Ctrl-C, a crash, a SIGKILL) reads the ledger first: a request that
   is in a job not yet collected is collected from that job and never sent again; only the rest go
   out, as new jobs of at most `batch_max_requests` requests. The cache folder, not the run
   folder, holds the ledger because the backend sees the cache and because it survives anything
   that gives the stage a new run folder. (Left open: a kill in the instant between the API
   creating a job and the ledger recording its id leaves that job unrecorded, so a re-run pays
   for its requests once more; the OpenAI fine-tuning route has the same window.)
3. Each job is polled every `batch_poll_interval` seconds. When it ends, its results (OpenAI: the
   output and error files; Anthropic: the results JSONL) are read by the backend's own `parse()`,
   priced at the batch factor, and reported through `on_done`, which puts them in the same
   per-sample cache as the normal path (the cache key does not depend on `batch`): a later run
   without batch finds them there, and samples.jsonl is written as for any other run.
4. A line that failed, or that a job left unfinished because it expired or was cancelled, becomes
   an error sample, which is never cached: the finished lines are kept and a re-run resubmits
   exactly the others, in a new job. A collected job's ledger moves to batches/done/.
5. A job the server no longer knows (a 404 on polling: deleted, a restarted server) can never end:
   its requests go out once more, in a new job whose ledger names the lost one (`resubmit_of`;
   the lost job's ledger moves to done/ as "gone"). A resubmitted job lost again ends as errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ladder.backends.http import api_message, scrub, scrub_samples
from ladder.backends.prices import model_entry, price_table
from ladder.cache import default_cache_dir
from ladder.errors import BackendError
from ladder.store import read_json, write_json
from ladder.types import Sample

if TYPE_CHECKING:
    from ladder.backends.request import APIClient, Request
    from ladder.config import GenerationConfig

LEDGER = "batches"
DEFAULT_FACTOR = 0.5  # both providers bill batch requests at half the list price (2025)
MAX_JOB_BYTES = 100_000_000  # OpenAI takes files up to 200 MB, Anthropic batches up to 256 MB
OPENAI_DONE = ("completed", "failed", "expired", "cancelled")
PROVIDERS = ("openai", "anthropic")


# -- prices -------------------------------------------------------------------------------------------

def price_factor(backend: Any) -> float | None:
    """Fraction of the list price a batch request costs; None for a backend without a batch API.
    prices.yaml's `_batch` (or a model row's own `batch`) overrides the 0.5 default."""
    if getattr(backend, "provider", None) not in PROVIDERS:
        return None

    entry = model_entry(backend.config.name) if getattr(backend.config, "price", None) is None else None
    default = price_table().get("_batch", DEFAULT_FACTOR)
    value = entry.get("batch", default) if isinstance(entry, dict) else default
    return float(value)


def check_costs(backend: Any, cost: float) -> dict[str, Any]:
    """`ladder check`'s prices of a stage whose list-price cost is `cost`: both the standard and the
    batch price, and as `cost_usd` the one this config pays."""
    factor = price_factor(backend)
    batch = None if factor is None else cost * factor
    uses = batch is not None and bool(getattr(backend.config, "batch", False))
    return {"cost_usd": batch if uses else cost, "cost_usd_standard": cost, "cost_usd_batch": batch,
            "batch": uses}


# -- the ledger ---------------------------------------------------------------------------------------

class Entry:
    """One job's ledger file: {provider, server, model, custom_ids, input_file_id?, job_id?, created}."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data

    @property
    def job_id(self) -> str | None:
        return self.data.get("job_id")

    def save(self, **changes: Any) -> None:
        self.data.update(changes)
        write_json(self.path, self.data)

    def done(self, status: str) -> None:
        """Move the ledger to batches/done/ (kept: the job ids stay on record)."""
        self.data.update(status=status, collected=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        target = self.path.parent / "done" / self.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, self.data)
        self.path.unlink(missing_ok=True)


def _server(backend: APIClient) -> str:
    return (backend.config.base_url or "default").rstrip("/")


def custom_id(backend: APIClient, request: Request) -> str:
    # Indices are part of it: two OpenAI requests for samples 0-7 and 8-15 of one unseeded prompt
    # have the same body. 64 characters at most, [A-Za-z0-9_-] (Anthropic's rule).
    blob = json.dumps([backend.provider, _server(backend), request.body, list(request.indices)],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "ladder-" + hashlib.sha256(blob.encode()).hexdigest()[:40]


def _load(folder: Path, backend: APIClient) -> list[Entry]:
    out = []
    for path in sorted(folder.glob(f"{backend.provider}-*.json")):
        try:
            data = read_json(path)
        except Exception:  # noqa: BLE001 - a torn file from a killed write: it recorded no job id yet
            continue
        if isinstance(data, dict) and data.get("server") == _server(backend):
            out.append(Entry(path, data))
    return out


# -- the run ------------------------------------------------------------------------------------------

Results = dict[str, tuple[str, Any]]  # custom_id -> ("ok", response body) | ("error", reason)


def run_batches(backend: APIClient, requests: list[Request], gen: GenerationConfig,
                on_done: Callable[..., None]) -> None:
    """Send `requests` as batch jobs (resuming recorded ones), wait for them, report every result."""
    folder = Path(getattr(backend, "state_dir", None) or default_cache_dir()) / LEDGER
    folder.mkdir(parents=True, exist_ok=True)
    by_id: dict[str, list[Request]] = {}
    for r in requests:
        by_id.setdefault(custom_id(backend, r), []).append(r)
    api = _OpenAI(backend) if backend.provider == "openai" else _Anthropic(backend)
    try:
        _run(api, folder, by_id, gen, on_done)
    finally:
        api.client.close()


def _run(api: _Provider, folder: Path, by_id: dict[str, list[Request]], gen: GenerationConfig,
         on_done: Callable[..., None]) -> None:
    from ladder.progress import console

    backend = api.backend
    cfg = backend.config

    entries = _load(folder, backend)
    claimed: dict[str, Entry] = {}
    active: list[Entry] = []
    for e in entries:
        if not e.job_id:
            continue
        mine = [c for c in e.data["custom_ids"] if c in by_id and c not in claimed]
        if mine:
            active.append(e)
            claimed.update((c, e) for c in mine)
            console.print(f"[bold]batch[/bold] resuming {backend.provider} batch job {e.job_id} "
                          f"({len(mine)} of its requests still wanted; ledger {e.path})", highlight=False)
    unsubmitted = {e.path.name: e for e in entries if not e.job_id}
    fresh = sorted(c for c in by_id if c not in claimed)
    active += _submit(api, folder, fresh, by_id, claimed, unsubmitted)
    for stale in unsubmitted.values():  # never became a job (killed before the create call)
        stale.path.unlink(missing_ok=True)

    factor = price_factor(backend) or 1.0
    failed: dict[str, int] = {}
    while active:
        lost: dict[str, str] = {}  # custom_id -> id of the job the server no longer knows
        for e, job, results in _wait(api, active, cfg.batch_poll_interval):
            status = api.status(job)
            mine = [c for c in e.data["custom_ids"] if claimed.get(c) is e]
            if job is None and not e.data.get("resubmit_of"):
                # A 404 on polling: the server forgot the job (deleted, another account's, a restarted
                # server). Waiting cannot end it, so its requests go out once more, in a new job; a
                # resubmitted job that is lost too ends as errors (a re-run tries them afresh).
                lost.update((c, e.job_id) for c in mine)
                e.done("gone: its requests were resubmitted")
                continue
            for c in mine:
                kind, value = results.get(c) or ("error", f"batch job {e.job_id} ended ({status}) without a "
                                                          f"result for this request")
                for r in by_id[c]:
                    samples = scrub_samples(_samples(backend, kind, value, r, gen, factor), api.key)
                    if samples[0].finish_reason == "error":
                        reason = samples[0].error or "error"
                        failed[reason[:120]] = failed.get(reason[:120], 0) + len(samples)
                    on_done(r.job, samples, r.indices)
            e.done(status)
        active = []
        if lost:
            jobs = sorted(set(lost.values()))
            console.print(f"[yellow]warn[/yellow] {backend.provider} batch: the server no longer knows job(s) "
                          f"{', '.join(jobs)} (HTTP 404); resubmitting their {len(lost)} requests once",
                          highlight=False, soft_wrap=True)
            active = _submit(api, folder, sorted(lost), by_id, claimed, {}, lost=lost)
    if failed:
        common = "; ".join(f"{k} (×{n})" for k, n in sorted(failed.items(), key=lambda kv: -kv[1])[:3])
        console.print(f"[yellow]warn[/yellow] {backend.provider} batch: {sum(failed.values())} samples failed: "
                      f"{common}. They are not cached; a re-run resubmits only those.", highlight=False)


def _submit(api: _Provider, folder: Path, ids: list[str], by_id: dict[str, list[Request]],
            claimed: dict[str, Entry], unsubmitted: dict[str, Entry],
            lost: dict[str, str] | None = None) -> list[Entry]:
    """Send `ids` as new jobs, each recorded in its ledger file before any call; returns their entries.
    `lost` (custom_id -> job id) marks a resubmission: each new job records the lost jobs it replaces."""
    from ladder.progress import console

    backend, cfg = api.backend, api.backend.config
    out = []
    for chunk in _chunks(ids, by_id, cfg.batch_max_requests):
        # A resubmission gets its own ledger name: the lost job's file (now in done/) keeps its record.
        resubmit_of = sorted({lost[c] for c in chunk}) if lost else []
        salt = " ".join(chunk) + "".join(f" lost:{j}" for j in resubmit_of)
        name = f"{backend.provider}-{hashlib.sha256(salt.encode()).hexdigest()[:16]}.json"
        e = unsubmitted.pop(name, None) or Entry(folder / name, {
            "provider": backend.provider, "server": _server(backend), "model": cfg.name,
            "custom_ids": chunk, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **({"resubmit_of": resubmit_of} if resubmit_of else {})})
        e.save()  # before any call: a kill after the upload finds the file id here
        api.submit(e, [(c, by_id[c][0].body) for c in chunk])  # records the job id the moment it exists
        out.append(e)
        claimed.update((c, e) for c in chunk)
        console.print(f"[bold]batch[/bold] {backend.provider} batch job {e.job_id} submitted "
                      f"({len(chunk)} requests, batch price); its id is in {e.path}, so after Ctrl-C "
                      f"or a crash the same command resumes it", highlight=False, soft_wrap=True)
    return out


def _chunks(ids: list[str], by_id: dict[str, list[Request]], most: int) -> list[list[str]]:
    """Consecutive groups of at most `most` requests and about MAX_JOB_BYTES of JSON each."""
    out: list[list[str]] = []
    size = 0
    for c in ids:
        n = len(json.dumps(by_id[c][0].body)) + 100
        if not out or len(out[-1]) >= most or size + n > MAX_JOB_BYTES:
            out.append([])
            size = 0
        out[-1].append(c)
        size += n
    return out


def _samples(backend: APIClient, kind: str, value: Any, request: Request, gen: GenerationConfig,
             factor: float) -> list[Sample]:
    if kind == "ok":
        try:
            samples = backend.parse(value, request, gen)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            value = f"malformed batch result ({type(exc).__name__})"
        else:  # parse() priced them at the list price
            return [dataclasses.replace(s, cost=s.cost * factor) for s in samples]
    return [Sample(text="", finish_reason="error", error=str(value)) for _ in request.indices]


def _wait(api: _Provider, entries: list[Entry], interval: float):
    """Yield (entry, job, results) for each job as it ends, polling every `interval` seconds."""
    from ladder.progress import console

    pending = list(entries)
    last: dict[str, str] = {}
    started = time.monotonic()
    with console.status("batch: waiting") as shown:
        while pending:
            for e in list(pending):
                job = api.retrieve(e)
                status = api.status(job)
                if last.get(e.job_id) != status:
                    console.print(f"[bold]batch[/bold] job {e.job_id}: {status} {api.counts(job)}", highlight=False)
                    last[e.job_id] = status
                if api.ended(job):
                    pending.remove(e)
                    yield e, job, api.results(e, job)
            if pending:
                shown.update(f"batch: {len(pending)} job(s) running · {time.monotonic() - started:.0f} s "
                             f"(Ctrl-C is safe: the same command resumes them)")
                time.sleep(interval)


# -- the two providers ----------------------------------------------------------------------------------

class _Provider:
    """The SDK calls of one provider's batch API, with its failures turned into BackendErrors."""

    def __init__(self, backend: APIClient):
        self.backend = backend
        self.key = backend.api_key()
        cfg = backend.config
        self.sdk = backend.sdk()
        cls = getattr(self.sdk, "OpenAI" if backend.provider == "openai" else "Anthropic")
        self.client = cls(api_key=self.key, base_url=cfg.base_url, timeout=cfg.timeout,
                          max_retries=cfg.max_retries)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, gone_ok: bool = False, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) with its failures as BackendErrors; with `gone_ok`, a 404 (the server
        no longer knows the job: deleted, expired from its records, another account's, a restarted
        server) returns None instead, so the caller can resubmit the job's requests."""
        name = self.backend.provider
        try:
            return fn(*args, **kwargs)
        except self.sdk.APIStatusError as exc:
            if gone_ok and exc.status_code == 404:
                return None
            raise BackendError(f"{name} batch API: {what} answered HTTP {exc.status_code}: "
                               f"{scrub(api_message(exc), self.key)}", field="model.batch",
                               fix="check model.name, model.base_url (a server without a batch API answers "
                                   "404: set batch: false) and the key; jobs already submitted are resumed "
                                   "by the same command") from None
        except self.sdk.APIConnectionError as exc:
            raise BackendError(f"{name} batch API: {what} failed: could not reach the server "
                               f"({type(exc).__name__})", field="model.base_url",
                               fix="run the same command again when the server is reachable: submitted jobs "
                                   "are resumed, not sent again") from None

    def retrieve(self, e: Entry) -> Any:
        """The job, or None when the server no longer knows it (its requests are resubmitted)."""
        return self._retrieve(e.job_id)


class _OpenAI(_Provider):
    def submit(self, e: Entry, lines: list[tuple[str, dict[str, Any]]]) -> None:
        endpoint = "/v1" + self.backend.path
        if "input_file_id" not in e.data:
            text = "".join(json.dumps({"custom_id": c, "method": "POST", "url": endpoint, "body": body},
                                      ensure_ascii=False) + "\n" for c, body in lines)
            file = self.call("uploading the batch file", self.client.files.create,
                             file=(e.path.stem + ".jsonl", text.encode()), purpose="batch")
            e.save(input_file_id=file.id)
        job = self.call("creating the batch", self.client.batches.create, input_file_id=e.data["input_file_id"],
                        endpoint=endpoint, completion_window="24h", metadata={"ladder_ledger": e.path.stem})
        e.save(job_id=job.id)

    def _retrieve(self, job_id: str) -> Any:
        return self.call(f"polling batch {job_id}", self.client.batches.retrieve, job_id, gone_ok=True)

    def status(self, job: Any) -> str:
        return "gone" if job is None else job.status

    def ended(self, job: Any) -> bool:
        return job is None or job.status in OPENAI_DONE

    def counts(self, job: Any) -> str:
        c = job and job.request_counts
        return f"({c.completed} done, {c.failed} failed of {c.total})" if c else ""

    def results(self, e: Entry, job: Any) -> Results:
        out: Results = {}
        if job is None:
            return out
        if job.status == "failed":
            errs = (job.errors.data if job.errors and job.errors.data else [])
            why = "; ".join(f"line {x.line}: {x.message}" if x.line else str(x.message) for x in errs[:3])
            return {c: ("error", f"batch job {job.id} failed: {why or 'no reason given'}")
                    for c in e.data["custom_ids"]}
        for fid in (job.output_file_id, job.error_file_id):
            if not fid:
                continue
            text = self.call(f"downloading {fid}", self.client.files.content, fid).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                response = line.get("response") or {}
                if response.get("status_code") == 200:
                    out[line["custom_id"]] = ("ok", response.get("body"))
                    continue
                err = line.get("error") or ((response.get("body") or {}).get("error")) or {}
                status = f"HTTP {response['status_code']}: " if response.get("status_code") else ""
                code = err.get("code") or err.get("type") or ""
                message = " ".join(str(err.get("message") or "no message").split())[:200]
                out[line["custom_id"]] = ("error", f"batch job {job.id} ({job.status}): {status}{message}"
                                                   + (f" ({code})" if code else ""))
        return out


class _Anthropic(_Provider):
    def submit(self, e: Entry, lines: list[tuple[str, dict[str, Any]]]) -> None:
        job = self.call("creating the message batch", self.client.messages.batches.create,
                        requests=[{"custom_id": c, "params": body} for c, body in lines])
        e.save(job_id=job.id)

    def _retrieve(self, job_id: str) -> Any:
        return self.call(f"polling message batch {job_id}", self.client.messages.batches.retrieve, job_id,
                         gone_ok=True)

    def status(self, job: Any) -> str:
        if job is None:
            return "gone"
        c = job.request_counts
        return "expired" if job.processing_status == "ended" and c.expired else job.processing_status

    def ended(self, job: Any) -> bool:
        return job is None or job.processing_status == "ended"

    def counts(self, job: Any) -> str:
        c = job and job.request_counts
        return (f"({c.succeeded} done, {c.errored} errored, {c.expired} expired, {c.canceled} canceled, "
                f"{c.processing} running)") if c else ""

    def results(self, e: Entry, job: Any) -> Results:
        out: Results = {}
        if job is None:
            return out
        items = self.call(f"downloading the results of {job.id}",
                          lambda: list(self.client.messages.batches.results(job.id)))
        for item in items:
            result = item.result
            if result.type == "succeeded":
                out[item.custom_id] = ("ok", result.message.model_dump(mode="json"))
            elif result.type == "errored":
                err = getattr(result.error, "error", None)
                kind = getattr(err, "type", "error")
                message = " ".join(str(getattr(err, "message", "") or "no message").split())[:200]
                out[item.custom_id] = ("error", f"batch job {job.id}: {kind}: {message}")
            else:  # expired or canceled before it ran
                out[item.custom_id] = ("error", f"batch job {job.id} {result.type} before this request ran")
        return out
