"""The fake server's long-running jobs: OpenAI files + fine-tuning jobs (FineTuningAPI) and the
OpenAI / Anthropic batch APIs (BatchAPI), held in memory."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Mapping, Protocol

from ladder.testing.wire import (
    BadRequest, Config, Reply, Responder, Stats, _digest, _reply, _unit, anthropic_response, count_tokens,
    error_body, normalize, openai_response, request_key, sent_key, unauthorized)


class FineTuningAPI:
    """OpenAI's files and fine-tuning jobs, in memory: enough for ladder's sft stage and its tests.

    POST /v1/files (multipart: purpose, file) stores a file. POST /v1/fine_tuning/jobs creates a job
    in status validating_files (hyperparameters from `method.supervised` or the older top-level
    `hyperparameters`; "auto" resolves to 3 epochs, batch 1, multiplier 2). Each GET
    /v1/fine_tuning/jobs/{id} is one poll: "running" until the `polls`-th poll, which finds it
    "succeeded" with fine_tuned_model "ft:<base>:ladder:<suffix>:<job id>" — or "failed" (error code
    invalid_training_file) when the file is not chat JSONL with at least 10 examples ending on an
    assistant message. `calls` counts requests per route, so a test can see a resumed run create
    nothing new. Deviations: no job listing, events, checkpoints or cancellation; no file content route.
    """

    def __init__(self, polls: int = 2):
        self.polls = polls
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polled: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()  # the loop thread writes, test threads read

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
        job = re.fullmatch(r"/fine_tuning/jobs/([A-Za-z0-9_-]+)", path)
        route = "GET /fine_tuning/jobs/{id}" if job else f"{method} {path}"
        with self._lock:
            self.calls[route] = self.calls.get(route, 0) + 1
            try:
                if route == "POST /files":
                    return 200, self._upload(headers, raw)
                if route == "POST /fine_tuning/jobs":
                    return 200, self._create(raw)
                if job and method == "GET":
                    return self._poll(job.group(1))
            except BadRequest as e:
                return 400, error_body("openai", 400, str(e), "0")
        return 404, error_body("openai", 404, f"unknown route {method} {path}", "0")

    def _upload(self, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        from email import policy
        from email.parser import BytesParser

        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise BadRequest("POST /v1/files wants multipart/form-data")
        form = BytesParser(policy=policy.HTTP).parsebytes(f"content-type: {ctype}\r\n\r\n".encode("latin-1") + raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in form.iter_parts()}
        if "file" not in parts or "purpose" not in parts:
            raise BadRequest("'file' and 'purpose' are required")
        purpose = parts["purpose"].get_payload(decode=True).decode()
        data = parts["file"].get_payload(decode=True) or b""
        fid = "file-" + _digest("file", len(self.files), data)[:24]
        self.contents[fid] = data
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                           "filename": parts["file"].get_filename() or "upload", "purpose": purpose,
                           "status": "processed"}
        return self.files[fid]

    def _create(self, raw: bytes) -> dict[str, Any]:
        body = json.loads(raw or b"{}")
        if not isinstance(body.get("model"), str) or not isinstance(body.get("training_file"), str):
            raise BadRequest("'model' and 'training_file' (strings) are required")
        file = self.files.get(body["training_file"])
        if file is None or file["purpose"] != "fine-tune":
            raise BadRequest(f"invalid training_file: {body['training_file']} (not a fine-tune file)")
        given = ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters") \
            or body.get("hyperparameters") or {}
        auto = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
        hyper = {k: auto[k] if given.get(k, "auto") == "auto" else given[k] for k in auto}
        jid = "ftjob-" + _digest("job", len(self.jobs), body)[:24]
        self.jobs[jid] = {
            "id": jid, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
            "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper, "model": body["model"],
            "organization_id": "org-ladder", "result_files": [], "seed": body.get("seed") or 0,
            "status": "validating_files", "trained_tokens": None, "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "metadata": body.get("metadata"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "suffix": body.get("suffix"),
        }
        self.polled[jid] = 0
        return self.jobs[jid]

    def _poll(self, jid: str) -> tuple[int, Any]:
        job = self.jobs.get(jid)
        if job is None:
            return 404, error_body("openai", 404, f"no fine-tuning job {jid}", "0")
        self.polled[jid] += 1
        if job["status"] in ("validating_files", "running"):
            problem, tokens = _check_chat_jsonl(self.contents[job["training_file"]])
            if problem:
                job.update(status="failed", finished_at=int(time.time()),
                           error={"code": "invalid_training_file", "message": problem, "param": "training_file"})
            elif self.polled[jid] >= self.polls:
                job.update(status="succeeded", finished_at=int(time.time()),
                           trained_tokens=tokens * job["hyperparameters"]["n_epochs"],
                           fine_tuned_model=f"ft:{job['model']}:ladder:{job['suffix'] or ''}:{jid}")
            else:
                job["status"] = "running"
        return 200, job


def _check_chat_jsonl(data: bytes) -> tuple[str | None, int]:
    """(what is wrong with a chat fine-tuning file or None, its whitespace-token count)."""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    tokens = 0
    for i, line in enumerate(lines, 1):
        try:
            msgs = json.loads(line)["messages"]
            assert isinstance(msgs, list) and msgs and msgs[-1]["role"] == "assistant"
            tokens += sum(count_tokens(m["content"]) for m in msgs)
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"line {i}: expected {{\"messages\": [..., {{\"role\": \"assistant\", ...}}]}}", 0
    if len(lines) < 10:
        return f"training file has {len(lines)} example(s), must have at least 10", 0
    return None, tokens


def _rfc3339(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Host(Protocol):
    """What the batch jobs read of the server that holds them (fake_api.py's App is one): its
    settings, counters, answers, uploaded files and key check."""

    config: Config
    stats: Stats
    responder: Responder
    fine_tuning: FineTuningAPI

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries the server's key (or the server has none)."""


class BatchAPI:
    """OpenAI's Batch API and Anthropic's Message Batches, in memory, answered by the same responder
    as the completion routes.

    OpenAI: POST /v1/files (multipart, purpose "batch"; FineTuningAPI's file store) with JSONL lines
    {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}; POST /v1/batches
    {input_file_id, endpoint, completion_window: "24h"}; GET /v1/batches/{id}; POST
    /v1/batches/{id}/cancel; GET /v1/files/{id}/content for the output file (lines whose request
    got a 200: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null})
    and the error file (other statuses, and {"response": null, "error": {"code": "batch_expired" |
    "batch_cancelled", ...}} for lines never run). A file with a duplicate custom_id or a line for
    another endpoint makes the job "failed" with `errors`.
    Anthropic: POST /v1/messages/batches {"requests": [{"custom_id", "params"}]}; GET
    /v1/messages/batches/{id}; POST .../{id}/cancel; GET .../{id}/results (its `results_url`) as
    JSONL {"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"} |
    {"type": "expired"} | {"type": "canceled"}}.

    A job stays in progress until `Config.batch_seconds` after its creation (the config at the time
    of the poll), then every line runs at once: each line is one attempt in the server's counters
    (requests, successes, requests_after_success, /_requests), so a test can see that no request was
    answered twice. Per attempt, with `batch_expire` a line is left unfinished (the job then ends
    "expired" with the other lines' results) and with `batch_line_errors` it fails with a 500.
    `counters()` (in GET /_stats as "batch") counts jobs, lines and calls per route.
    Deviations: no batch listing, no /v1/responses or embeddings endpoints, no 24 h expiry of its own.
    """

    def __init__(self, app: Host):
        self.app = app
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # job id -> [(custom_id, body)]
        self.results: dict[str, bytes] = {}  # anthropic job id -> results JSONL
        self.created: dict[str, float] = {}
        self.headers: dict[str, Mapping[str, str]] = {}
        self.reset()

    def reset(self) -> None:
        """Zero the counters (jobs and files stay)."""
        self.calls = {}
        self.jobs_created = {"openai": 0, "anthropic": 0}
        self.lines_submitted = {"openai": 0, "anthropic": 0}

    def counters(self) -> dict[str, Any]:
        return {"jobs_created": dict(self.jobs_created), "lines_submitted": dict(self.lines_submitted),
                "calls": dict(self.calls)}

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        provider = "anthropic" if path.startswith("/messages/") else "openai"
        route = re.sub(r"/(batch_|msgbatch_|file-)[A-Za-z0-9_-]+", "/{id}", path)
        self.calls[f"{method} {route}"] = self.calls.get(f"{method} {route}", 0) + 1
        if not self.app._authorized(headers):
            return unauthorized(provider, sent_key(headers))
        m = re.fullmatch(r"/(?:messages/)?batches/([A-Za-z0-9_-]+)(/cancel|/results)?", path)
        try:
            if path == "/batches" and method == "POST":
                return _reply(200, self._openai_create(json.loads(raw or b"{}"), headers))
            if path == "/messages/batches" and method == "POST":
                return _reply(200, self._anthropic_create(json.loads(raw or b"{}"), headers))
            f = re.fullmatch(r"/files/([A-Za-z0-9_-]+)/content", path)
            if f and method == "GET":
                data = self.app.fine_tuning.contents.get(f.group(1))
                if data is None:
                    return _reply(404, error_body("openai", 404, f"No such File object: {f.group(1)}", "0"))
                return 200, data, {"content-type": "application/octet-stream"}
            if m and m.group(1) in self.jobs:
                jid, action = m.group(1), m.group(2)
                if action == "/cancel" and method == "POST":
                    self._finish(jid, cancel=True)
                elif action is None and method == "GET":
                    self._tick(jid)
                elif action == "/results" and method == "GET" and provider == "anthropic":
                    if jid not in self.results:
                        return _reply(400, error_body(provider, 400, f"batch {jid} has not ended yet", "0"))
                    return 200, self.results[jid], {"content-type": "application/binary"}
                else:
                    return _reply(404, error_body(provider, 404, f"unknown route {method} {path}", "0"))
                return _reply(200, self._view(jid, headers))
        except (ValueError, BadRequest) as e:
            return _reply(400, error_body(provider, 400, str(e), "0"))
        return _reply(404, error_body(provider, 404, f"no such batch or route: {method} {path}", "0"))

    # -- creation ----------------------------------------------------------------------------------

    def _new(self, provider: str, job: dict[str, Any], lines: list[tuple[str, dict[str, Any]]],
             headers: Mapping[str, str]) -> dict[str, Any]:
        self.jobs[job["id"]] = job
        self.lines[job["id"]] = lines
        self.created[job["id"]] = time.monotonic()
        self.headers[job["id"]] = dict(headers)
        self.jobs_created[provider] += 1
        self.lines_submitted[provider] += len(lines)
        return job

    def _openai_create(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        fid = body.get("input_file_id")
        file = self.app.fine_tuning.files.get(fid) if isinstance(fid, str) else None
        if file is None or file["purpose"] != "batch":
            raise BadRequest(f"invalid input_file_id: {fid!r} (not a file uploaded with purpose 'batch')")
        if body.get("completion_window") != "24h":
            raise BadRequest("completion_window must be '24h'")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise BadRequest(f"this fake serves batches for /v1/chat/completions only, not {endpoint!r}")
        now = int(time.time())
        jid = "batch_" + _digest("batch", len(self.jobs), fid)[:24]
        job = {"id": jid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
               "completion_window": "24h", "status": "validating", "output_file_id": None,
               "error_file_id": None, "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
               "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
               "cancelling_at": None, "cancelled_at": None, "model": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        lines, problems, seen = [], [], set()
        for i, text in enumerate(self.app.fine_tuning.contents[fid].decode("utf-8", "replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                cid, url = line["custom_id"], line["url"]
                assert isinstance(cid, str) and isinstance(line["body"], dict) and line["method"] == "POST"
            except (ValueError, KeyError, TypeError, AssertionError):
                problems.append({"code": "invalid_request", "line": i, "param": None,
                                 "message": "each line needs custom_id, method POST, url and a body object"})
                continue
            if url != endpoint:
                problems.append({"code": "mismatched_endpoint", "line": i, "param": "url",
                                 "message": f"url {url!r} does not match the batch endpoint {endpoint}"})
            if cid in seen:
                problems.append({"code": "duplicate_custom_id", "line": i, "param": "custom_id",
                                 "message": f"the custom_id {cid!r} is used more than once"})
            seen.add(cid)
            lines.append((cid, line["body"]))
        job["request_counts"]["total"] = len(lines)
        if problems or not lines:
            problems = problems or [{"code": "empty_file", "line": None, "param": None,
                                     "message": "the input file has no requests"}]
            job.update(status="failed", failed_at=now, errors={"object": "list", "data": problems})
        return self._new("openai", job, lines, headers)

    def _anthropic_create(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise BadRequest("requests: a non-empty array is required")
        lines, seen = [], set()
        for r in requests:
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid):
                raise BadRequest(f"requests: custom_id must match ^[a-zA-Z0-9_-]{{1,64}}$, got {cid!r}")
            if cid in seen:
                raise BadRequest(f"requests: duplicate custom_id {cid!r}")
            if not isinstance(r.get("params"), dict):
                raise BadRequest("requests: each request needs a params object")
            seen.add(cid)
            lines.append((cid, r["params"]))
        now = time.time()
        jid = "msgbatch_" + _digest("msgbatch", len(self.jobs), lines)[:24]
        job = {"id": jid, "type": "message_batch", "processing_status": "in_progress",
               "request_counts": {"processing": len(lines), "succeeded": 0, "errored": 0, "canceled": 0,
                                  "expired": 0},
               "created_at": _rfc3339(now), "expires_at": _rfc3339(now + 86400), "ended_at": None,
               "archived_at": None, "cancel_initiated_at": None, "results_url": None}
        return self._new("anthropic", job, lines, headers)

    # -- progress ----------------------------------------------------------------------------------

    def _view(self, jid: str, headers: Mapping[str, str]) -> dict[str, Any]:
        job = dict(self.jobs[jid])
        if job.get("type") == "message_batch" and jid in self.results:
            job["results_url"] = f"http://{headers.get('host', '127.0.0.1')}/v1/messages/batches/{jid}/results"
        return job

    def _tick(self, jid: str) -> None:
        job = self.jobs[jid]
        if job.get("status") == "validating":
            job.update(status="in_progress", in_progress_at=int(time.time()))
        ended = job.get("status") in ("completed", "failed", "expired", "cancelled") \
            or job.get("processing_status") == "ended"
        if not ended and time.monotonic() - self.created[jid] >= self.app.config.batch_seconds:
            self._finish(jid)

    def _finish(self, jid: str, cancel: bool = False) -> None:
        """Run every line (or none, for a cancel) and end the job."""
        job, cfg = self.jobs[jid], self.app.config
        if job.get("status") in ("completed", "failed", "expired", "cancelled") \
                or job.get("processing_status") == "ended":
            return
        provider = "anthropic" if job.get("type") == "message_batch" else "openai"
        outcomes = [self._run_line(provider, cid, body, self.headers[jid], cfg, cancel)
                    for cid, body in self.lines[jid]]
        kinds = [k for k, _ in outcomes]
        now = time.time()
        if provider == "anthropic":
            counts = {"processing": 0, "succeeded": kinds.count("ok"), "errored": kinds.count("error"),
                      "canceled": kinds.count("cancelled"), "expired": kinds.count("expired")}
            data = b"".join(json.dumps(line).encode() + b"\n" for _, line in outcomes)
            self.results[jid] = data
            job.update(processing_status="ended", request_counts=counts, ended_at=_rfc3339(now),
                       cancel_initiated_at=_rfc3339(now) if cancel else None)
            return
        good = [line for k, line in outcomes if k == "ok"]
        bad = [line for k, line in outcomes if k != "ok"]
        for name, rows in (("output_file_id", good), ("error_file_id", bad)):
            if rows:
                fid = "file-" + _digest(jid, name)[:24]
                data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
                self.app.fine_tuning.contents[fid] = data
                self.app.fine_tuning.files[fid] = {"id": fid, "object": "file", "bytes": len(data),
                                                   "created_at": int(now), "filename": f"{jid}_{name}.jsonl",
                                                   "purpose": "batch_output", "status": "processed"}
                job[name] = fid
        status = "cancelled" if cancel else "expired" if "expired" in kinds else "completed"
        job.update(status=status, request_counts={"total": len(kinds), "completed": len(good), "failed": len(bad)},
                   finalizing_at=int(now), **{f"{status}_at": int(now)})
        if cancel:
            job["cancelling_at"] = int(now)

    def _run_line(self, provider: str, cid: str, body: dict[str, Any], headers: Mapping[str, str],
                  cfg: Config, cancel: bool) -> tuple[str, dict[str, Any]]:
        """One line as one attempt in the counters -> (ok | error | expired | cancelled, result line)."""
        rid = _digest("line", cid, time.monotonic())[:24]
        if cancel:
            return "cancelled", self._line(provider, cid, rid, None, "cancelled")
        self.app.stats.begin(provider, headers)
        key = request_key(provider, body)
        self.app.stats.received(provider, body)
        attempt = self.app.stats.attempt(key)
        outcome, status = "ok", 200
        try:
            if _unit(cfg.seed, "batch-expire", key, attempt) < cfg.batch_expire:
                outcome, status = "batch_expired", None
                return "expired", self._line(provider, cid, rid, None, "expired")
            if _unit(cfg.seed, "batch-error", key, attempt) < cfg.batch_line_errors:
                outcome, status = "batch_error", 500
                return "error", self._line(provider, cid, rid, (500, "The server had an error (injected)"), "error")
            try:
                req = normalize(provider, body, key)
                texts = [self.app.responder(req, i) for i in range(req.n)]
            except BadRequest as e:
                outcome, status = "bad_request", 400
                return "error", self._line(provider, cid, rid, (400, str(e)), "error")
            payload = anthropic_response(req, texts, rid) if provider == "anthropic" else \
                openai_response(req, texts, body, rid)
            return "ok", self._line(provider, cid, rid, payload, "ok")
        finally:
            self.app.stats.end(outcome, status, key)

    @staticmethod
    def _line(provider: str, cid: str, rid: str, what: Any, kind: str) -> dict[str, Any]:
        if provider == "anthropic":
            if kind == "ok":
                return {"custom_id": cid, "result": {"type": "succeeded", "message": what}}
            if kind == "error":
                return {"custom_id": cid, "result": {"type": "errored", "error": error_body(provider, what[0],
                                                                                        what[1], rid)}}
            return {"custom_id": cid, "result": {"type": "canceled" if kind == "cancelled" else "expired"}}
        if kind == "ok":
            return {"id": f"batch_req_{rid}", "custom_id": cid, "error": None,
                    "response": {"status_code": 200, "request_id": rid, "body": what}}
        if kind == "error":
            return {"id": f"batch_req_{rid}", "custom_id": cid, "error": None,
                    "response": {"status_code": what[0], "request_id": rid,
                                 "body": error_body(provider, what[0], what[1], rid)}}
        message = ("This request could not be executed before the completion window expired."
                   if kind == "expired" else "This request was not executed because the batch was cancelled.")
        return {"id": f"batch_req_{rid}", "custom_id": cid, "response": None,
                "error": {"code": f"batch_{kind}", "message": message}}
