"""What the HTTP API backends (openai.py, anthropic.py) share: config keys, the key check, the
concurrent request loop with our own retry policy, and prices.

Each backend only says how to build a request body for some sample indices of a prompt and how
to read the answer; everything else lives here:

- Concurrency: workers drain one queue of requests on one event loop, so a slot is refilled the
  moment a request ends (no waves) and 100k requests cost a few hundred coroutines, not 100k
  tasks. Each attempt takes a slot (and its turn) from the model's rate controller
  (ladder/backends/limits.py: `concurrency: auto`, pacing from rate-limit headers and
  `rate_limit:`), one per model and key in the process, shared by every stage and variant calling
  it. One SDK client, created once per `sample()` call, serves every request.
- Retries are ours (the SDK's max_retries is 0): exponential backoff with jitter on 429, 408,
  409, 5xx, timeouts, dropped connections and malformed bodies, honouring Retry-After /
  retry-after-ms, for at most max_retries + 1 attempts and max_retry_seconds in all (attempts
  included: a server that never answers cannot hold a request longer). A request that still
  fails becomes Sample(finish_reason="error"), which the cache never stores, so a re-run retries
  exactly those. 401/403/404 stop the stage at once; DOWN_AFTER requests in a row failed on
  server errors stop sending (the server is down) and the runner skips later stages on the model.
- A URL no request can reach is a configuration error, not a transient one: before the results
  folder is touched, `probe()` sends one free request (the model list) and a refused connection,
  an unknown host, a URL without http:// or a failed TLS handshake stops the run (exit 2) with
  the URL and the fix; so does a key the server rejects (401). Should the probe not have run
  (a model an earlier stage produced), the same failures stop the stage while no request has
  succeeded yet. Anything else the probe meets (404, 5xx, a timeout) proves nothing and is left
  to the retry policy.
- Requests go through the SDK's generic `client.post(path, body=..., cast_to=bytes)`: the real
  client (auth, headers, timeouts, error classes) without its per-request type transform and
  response models: a quarter of the client's CPU per request (1.5 → 1.15 ms; scripts/bench_api.py).
  We parse the wire JSON ourselves, so a broken body is one ValueError we retry.
- Results go to `on_done(job, samples, indices)` as requests end: the responses that arrive in
  one turn of the event loop are committed to the cache together, in one transaction, before the
  turn after it (one commit per response was 40 µs of the loop's time each), so a killed run
  resumes without re-sending anything that had finished.
- CPU per request is what keeps a run from the ideal time (all requests share one event loop,
  and a burst of responses queues for it; scripts/bench_api.py): prices are built once per
  backend, and the SDK client's plumbing once per process (client.py).
- The API key is read from the environment variable the config names, and never written
  anywhere: error texts are scrubbed of it before they become Samples or messages, and so are
  answers (a server that echoes the request's key or Authorization header).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import json
import os
import random
import re
import time
from typing import Any, Callable, Sequence

from ladder.backends.api_config import ENV_NAME, APIConfig  # noqa: F401 (APIConfig: re-exported for plugins)
from ladder.backends.api_cost import APICost
from ladder.backends.base import Backend, Job, report_all, shifted
from ladder.backends.client import aiohttp_installed, freeze_heap, response_class, tls_settings
from ladder.backends.http import api_message, retry_after, run_sync, scrub, scrub_samples, setup_problem
from ladder.backends.limits import controller_for, request_tokens
from ladder.backends.prices import PRICES
# Request and split: re-exported, as backends (openai.py, plugins) import them from here.
from ladder.backends.request import DOWN_AFTER, Failure, Request, Tally, after_attempts, chunks, split  # noqa: F401
from ladder.config import GenerationConfig
from ladder.errors import BackendError, MissingKey
from ladder.types import Message, Sample

RETRY_STATUS = {408, 409, 429}  # and every 5xx (Anthropic's 529 "overloaded" included)
FATAL_STATUS = {401: "the API key was rejected", 403: "the API key may not use this model",
                404: "the model or endpoint does not exist"}
PROBE_TIMEOUT = 20.0  # seconds the pre-run model-list request may take
GIVE_UP_AFTER = 10  # this many rejected (4xx) requests before any success: the config is wrong, stop


class APIBackend(APICost, Backend):
    """Base of the HTTP API backends. Subclasses set `provider`, `client_class`, `path`, `max_n`
    and implement `body` and `parse`."""

    provider = ""
    """Provider name, which is also its SDK's module name (imported only when needed)."""
    client_class = ""
    """The SDK's async client class."""
    path = ""
    """Endpoint, relative to the client's base URL."""
    max_n = 1
    """Most samples one request can return (OpenAI's `n`); 1 = one request per sample."""
    models_path = ""
    """The free model-list endpoint `probe()` asks, relative to the client's base URL."""

    config: APIConfig

    down: str | None = None
    """Set (to why) once DOWN_AFTER requests in a row failed on server errors: nothing more is sent
    through this backend, and the runner skips the later stages that use it."""

    # -- set-up ----------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        # A model name means different weights on different servers, so the server is part of it.
        fp = self.config.name
        if self.config.base_url:
            fp += "@" + self.config.base_url.rstrip("/")
        return fp

    def api_key(self) -> str:
        env = self.config.api_key_env
        if env is None:
            return "none"  # the SDKs insist on a non-empty key; keyless local servers ignore it
        if not ENV_NAME.fullmatch(env):  # deliberately not echoed: it may be a pasted key
            raise BackendError("model.api_key_env must be the NAME of an environment variable, "
                               "not the key itself", field="model.api_key_env",
                               fix=f"export the key as e.g. {type(self.config).model_fields['api_key_env'].default}"
                                   " and write that name here")
        key = os.environ.get(env, "").strip()
        if not key:
            raise MissingKey(f"no API key for the {self.provider} backend: the environment "
                             f"variable {env} is not set", env=env, field="model.api_key_env",
                             fix=f"export {env}=... before running (or set model.api_key_env to the "
                                 f"variable that holds it)")
        return key

    def preflight(self) -> None:
        url = self.config.base_url
        if url is not None and not re.match(r"https?://", url.strip(), re.IGNORECASE):
            raise BackendError(f"'{scrub(url, '')}' has no http:// or https://, so no request can be sent",
                               field="model.base_url",
                               fix=f"write it with its scheme, e.g. http://{scrub(url.strip(), '')}")
        needs = [self.provider] + (["aiohttp"] if self.config.http_client == "aiohttp" else [])  # auto falls back
        # Only whether they are installed: importing the SDK costs ~0.5 s, which a re-run answered
        # wholly from results and cache never needs (scripts/bench_cache.py). The first request
        # imports it, so the first API stage's time includes that half second.
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendError(f"the {self.provider} backend with http_client {self.config.http_client} "
                               f"needs {' and '.join(needs)} ({', '.join(missing)} not installed)",
                               fix=f"pip install {' '.join(needs)}")
        if self.price() is None:
            from ladder.progress import console

            console.print(f"[yellow]warn[/yellow] cost: no price for model '{self.config.name}' in "
                          f"{PRICES.name}; cost is shown as $0. Set model.price: {{input: ..., output: ...}} "
                          f"(USD per 1M tokens) to count it", highlight=False)
        # Last: `ladder check` goes on without a key, and every other check has still run.
        try:
            self.api_key()
        except MissingKey as exc:
            if not self.planning:
                raise
            self.missing_key = exc.env

    def probe(self) -> None:
        """One free request (the model list) before the results folder is touched: a URL nothing
        answers at, or a key the server rejects, stops the run now (BackendError), not after a
        stage folder was made and every request retried. Anything else proves nothing: the run
        goes on and the retry policy decides."""
        key = self.api_key()

        async def ask() -> None:
            client = self.client(key)
            try:
                # A short wait: a timeout proves nothing here, and the run has its own timeouts.
                await client.get(self.models_path, cast_to=bytes,
                                 options={"timeout": min(self.config.timeout, PROBE_TIMEOUT)})
            except Exception as exc:  # noqa: BLE001 - sorted below; only two kinds stop the run
                sdk = self.sdk()
                if isinstance(exc, sdk.APIStatusError) and exc.status_code == 401:
                    self._failure(exc, Tally(), key)  # raises the rejected-key error
                # aiohttp's transport reports a refused connection as a connect timeout: the cause decides.
                if isinstance(exc, sdk.APIConnectionError) and (not isinstance(exc, sdk.APITimeoutError)
                                                                or setup_problem(exc)):
                    self._unreachable(exc, key)
            finally:
                await client.close()

        run_sync(ask())

    def _unreachable(self, exc: Exception, key: str) -> None:
        """Raise BackendError if `exc` says no request to this URL can work (refused, unknown host,
        no scheme, TLS); return if it may be transient (a reset, a dropped connection)."""
        url = scrub(str(self.config.base_url or f"the {self.provider} API's default URL"), key)
        problem = setup_problem(exc)
        if problem is None:
            return
        what, fix = {
            "refused": ("the connection was refused: nothing listens at that host and port",
                        "start the server, or correct the host and port in model.base_url"),
            "dns": ("its host name does not resolve",
                    "correct the host in model.base_url (a typo?), or check the network and DNS"),
            "scheme": ("the URL has no http:// or https://",
                       "write model.base_url with its scheme, e.g. http://localhost:8000/v1"),
            "tls": ("the TLS (https) handshake failed",
                    "use http:// for a server without TLS, or give Python the server's certificate "
                    "(SSL_CERT_FILE)"),
        }[problem[0]]
        raise BackendError(f"cannot reach the {self.provider} server at {url}: {what} ({scrub(problem[1], key)})",
                           field="model.base_url", fix=fix) from None

    # -- the SDK, and what a subclass provides ------------------------------------------------------

    def sdk(self) -> Any:
        return importlib.import_module(self.provider)

    def client(self, api_key: str) -> Any:
        """One async SDK client for every request of a sample() call, with the SDK's retries off."""
        sdk = self.sdk()
        # One kept-alive connection per worker: the SDK keeps only 100, so a higher concurrency would
        # reconnect (a TLS handshake on real APIs) for every request past the 100th in flight.
        n = self.config.connections()
        limits = type(sdk.DEFAULT_CONNECTION_LIMITS)(max_connections=n, max_keepalive_connections=n)
        http = sdk.DefaultAioHttpClient if self.transport() == "aiohttp" else sdk.DefaultAsyncHttpxClient
        return getattr(sdk, self.client_class)(api_key=api_key, base_url=self.config.base_url, max_retries=0,
                                               timeout=self.config.timeout,
                                               http_client=http(limits=limits, **tls_settings(type(limits))))

    def transport(self) -> str:
        """The HTTP transport in use: `http_client`, with auto resolved (aiohttp when installed)."""
        choice = self.config.http_client
        if choice == "auto":  # an SDK release older than its aiohttp client gets httpx too
            choice = "aiohttp" if aiohttp_installed() and hasattr(self.sdk(), "DefaultAioHttpClient") else "httpx"
        return choice

    def body(self, messages: Sequence[Message], gen: GenerationConfig, indices: tuple[int, ...]) -> dict[str, Any]:
        """The JSON request body asking for len(indices) samples."""
        raise NotImplementedError

    def parse(self, data: dict[str, Any], request: Request, gen: GenerationConfig) -> list[Sample]:
        """One Sample per index of `request` from the decoded response (KeyError and friends
        mean a malformed body and are retried)."""
        raise NotImplementedError

    # -- the request loop ------------------------------------------------------------------------------

    def sample(self, jobs: list[Job], gen: GenerationConfig,
               on_done: Callable[..., None]) -> None:
        if len(jobs) > 1 and any(m.cache for m in jobs[0].messages):
            jobs, on_done = self._warm_prompt_cache(jobs, gen, on_done)
        requests = [Request(j, chunk, self.body(job.messages, gen, chunk))
                    for j, job in enumerate(jobs)
                    for chunk in chunks(job.indices, self.max_n)]
        if requests and self.config.batch:
            from ladder.backends.batch import run_batches

            run_batches(self, requests, gen, on_done)
        elif requests:
            run_sync(self._sample_all(requests, gen, on_done, self.api_key()))

    def _warm_prompt_cache(self, jobs: list[Job], gen: GenerationConfig,
                           on_done: Callable[..., None]) -> tuple[list[Job], Callable[..., None]]:
        """Prompts sharing a prefix (few_shot `shots: fixed`): the first is answered before the rest
        are sent, so the provider has cached the prefix when they arrive. Sent all at once, the
        first `concurrency` requests would each miss the cache (and on Anthropic each pay a cache
        write). Returns the jobs left and their on_done (job numbers shift by one)."""
        first = [Request(0, chunk, self.body(jobs[0].messages, gen, chunk))
                 for chunk in chunks(jobs[0].indices, self.max_n)]
        run_sync(self._sample_all(first, gen, on_done, self.api_key()))
        return jobs[1:], shifted(on_done, 1)

    def rate_controller(self) -> Any | None:
        # A batch job has no live requests to pace.
        return None if self.config.batch else self.controller()

    def controller(self) -> Any:
        """This model's rate controller, shared in the process by every caller of the same
        (provider, base_url, model, key env)."""
        cfg = self.config
        return controller_for((self.provider, (cfg.base_url or "").rstrip("/"), cfg.name, cfg.api_key_env),
                              cfg.concurrency, cfg.concurrency_min, cfg.concurrency_max,
                              *cfg.rate_limit.per_minute() if cfg.rate_limit else (None, None))

    async def _sample_all(self, requests: list[Request], gen: GenerationConfig,
                          on_done: Callable[..., None], key: str) -> None:
        client = self.client(key)
        control = self.controller()
        queue = iter(requests)  # shared by the workers: next() never awaits, so no lock is needed
        tally = Tally()
        done: list[tuple[int, list[Sample], tuple[int, ...]]] = []  # answered, not yet reported

        def report() -> None:
            if done:
                reports = done[:]
                done.clear()
                report_all(on_done, reports)

        async def worker() -> None:
            for request in queue:
                if self.down:  # the server failed DOWN_AFTER requests in a row: send nothing more
                    samples = [Sample(text="", finish_reason="error", error=f"not sent: {self.down}")
                               for _ in request.indices]
                else:
                    samples = await self._with_retries(client, request, gen, key, tally, control)
                done.append((request.job, samples, request.indices))
                if len(done) == 1:
                    # Responses come in bursts: this one waits for the rest of this turn of the event
                    # loop, then reports them all (one cache commit); the others send their next
                    # request at once.
                    await asyncio.sleep(0)
                    report()

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.config.connections(), len(requests)))]
        frozen = freeze_heap()
        try:
            await asyncio.gather(*workers)
        finally:  # a fatal error in one worker stops the others; what finished is cached here
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if frozen:
                gc.unfreeze()
            try:
                report()  # answers a cancelled worker held (Ctrl-C, a fatal error elsewhere)
            finally:
                await client.close()
                tally.report(self.provider)

    async def _with_retries(self, client: Any, request: Request, gen: GenerationConfig, key: str,
                            tally: Tally, control: Any) -> list[Sample]:
        cfg = self.config
        started = time.monotonic()
        cost = lambda: request_tokens(request.body, len(request.indices))  # noqa: E731 - asked when paced by tokens
        fail: Failure | None = None  # the last attempt's failure
        for attempt in range(cfg.max_retries + 1):
            sent = await control.acquire(cost)  # a slot and this request's turn; held for one attempt
            try:
                # max_retry_seconds bounds the whole request, attempts included: a server that accepts
                # the connection and never answers would otherwise hold it max_retry_seconds + timeout.
                # wait_for (a task per call) only when the deadline comes before the SDK's own timeout.
                left = cfg.max_retry_seconds - (time.monotonic() - started)
                post = client.post(self.path, body=request.body, cast_to=response_class(self.sdk()))
                try:
                    answer = await (post if left > cfg.timeout else asyncio.wait_for(post, max(left, 0.001)))
                except asyncio.TimeoutError:
                    # Name the server's last answer when there was one: "HTTP 500 …" is the cause,
                    # the deadline only ended the retrying.
                    limit = cfg.max_retry_seconds
                    raise Failure(f"{fail.reason} (then no answer before the deadline; max_retry_seconds is {limit:g})"
                                  if fail else f"no answer within max_retry_seconds ({limit:g} s)",
                                  retry=False) from None
                try:
                    samples = scrub_samples(self.parse(json.loads(answer.content), request, gen), key)
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                    raise Failure(f"malformed response body ({type(exc).__name__})", retry=True) from None
                tally.ok += 1
                tally.down_run = 0
                control.on_success(answer.headers, *(control.tpm and (  # how far off our prompt estimate was
                    request_tokens(request.body, 0)[0], sum(s.prompt_tokens or 0 for s in samples)) or ()))
                return samples
            except Failure as failure:
                fail = failure
            except Exception as exc:  # noqa: BLE001 - sorted into retry / give up / fatal below
                if getattr(exc, "status_code", None) in (429, 529):  # the provider's limit, not a fault
                    control.on_rate_limited(sent, exc.response.headers)
                fail = self._failure(exc, tally, key)
            finally:
                control.release()  # a retry waits holding no slot: Retry-After never stalls the others
            if not fail.retry or attempt == cfg.max_retries:
                break
            delay = self._delay(attempt, fail.wait)
            if time.monotonic() - started + delay > cfg.max_retry_seconds:
                error = (f"{fail.reason} (after {attempt + 1} attempts in {time.monotonic() - started:.0f} s; "
                         f"max_retry_seconds is {cfg.max_retry_seconds:g})")
                return self._failed(request, fail, error, tally)
            await asyncio.sleep(delay)
        return self._failed(request, fail, after_attempts(fail.reason, attempt), tally)

    def _failed(self, request: Request, fail: Failure, error: str, tally: Tally) -> list[Sample]:
        """The error samples of a request that failed after all retries, counted towards DOWN_AFTER."""
        tally.errors[fail.reason] += 1
        tally.down_run = tally.down_run + 1 if fail.server else 0
        if tally.down_run >= DOWN_AFTER and not self.down:
            self.down = (f"the server failed {tally.down_run} requests in a row after all retries "
                         f"(last: {fail.reason}), so the rest of the stage was not sent")
        return [Sample(text="", finish_reason="error", error=error) for _ in request.indices]

    def _failure(self, exc: Exception, tally: Tally, key: str) -> Failure:
        """Sort an SDK exception into retry or give up; raise BackendError when no request can work."""
        sdk = self.sdk()
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            reason = scrub(f"HTTP {status}: {api_message(exc)}", key)  # a 401 message may quote the key
            if status in FATAL_STATUS:
                raise BackendError(f"{self.provider} answered {reason} — {FATAL_STATUS[status]}",
                                   field="model", fix=f"check model.name ('{self.config.name}'), "
                                   f"model.base_url and the key in ${self.config.api_key_env}") from None
            retry = status in RETRY_STATUS or status >= 500
            server = status >= 500 or status in (408, 409)
            if not retry:
                tally.rejected += 1
                if tally.rejected >= GIVE_UP_AFTER and tally.ok == 0:
                    raise BackendError(f"{self.provider} rejected the first {tally.rejected} requests "
                                       f"({reason})", field="model",
                                       fix="fix the request settings the message names (model, "
                                           "generation) and run again") from None
            return Failure(reason, retry, retry_after(exc.response.headers), server=server)
        # aiohttp's transport reports a refused connection or an unknown host as a connect timeout
        # (APITimeoutError, a subclass of APIConnectionError): the exception's cause decides.
        setup = isinstance(exc, sdk.APIConnectionError) and setup_problem(exc) is not None
        if isinstance(exc, sdk.APITimeoutError) and not setup:
            return Failure(f"timed out after {self.config.timeout:g} s", retry=True)
        if isinstance(exc, sdk.APIConnectionError):  # refused, reset, dropped before the answer
            if tally.ok == 0:  # nothing has got through yet: a wrong URL is not worth retrying
                self._unreachable(exc, key)
            if setup:  # said as what it is: aiohttp's transport reports a refusal as a connect timeout
                kind = setup_problem(exc)[0]
                return Failure("connection refused" if kind == "refused" else f"connection failed ({kind})", retry=True)
            cause = exc.__cause__ or exc.__context__
            return Failure(f"connection failed ({type(cause or exc).__name__})", retry=True)
        raise exc  # not an API failure: a bug, keep the traceback

    def _delay(self, attempt: int, hint: float | None) -> float:
        cfg = self.config
        if hint is not None:  # the server knows when capacity returns; jitter up so retries spread
            return min(hint, cfg.max_backoff) * random.uniform(1.0, 1.25)
        return min(cfg.max_backoff, cfg.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)


