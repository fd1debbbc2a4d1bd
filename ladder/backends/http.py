"""What the API backends read out of a failed HTTP exchange: whether the URL can work at all, the
provider's message (with any key masked), how long the server asks us to wait. Shared by the
per-request path (api.py) and the batch route (batch.py)."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Coroutine, Mapping

if TYPE_CHECKING:
    from ladder.types import Sample

# Strings shaped like provider keys, scrubbed from error texts even when they are not our key.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{6,}")


def setup_problem(exc: BaseException) -> tuple[str, str] | None:
    """(kind, detail) when an exception chain says the URL cannot work: refused, dns, scheme or
    tls; None for failures that may pass (a reset, a drop, a timeout)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "refused", str(e)
        if isinstance(e, socket.gaierror):
            return "dns", str(e)
        if type(e).__name__ == "UnsupportedProtocol":  # httpx's; the class lives in a versioned module
            return "scheme", str(e)
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return "tls", str(e)
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ()), getattr(e, "os_error", None)]
    return None


def run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """asyncio.run from synchronous code; inside a running loop (a notebook) use a fresh thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def api_message(exc: Exception) -> str:
    """The provider's error message, shortened: {"error": {"message": ...}} in both formats."""
    body = getattr(exc, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
    text = " ".join(str(msg or getattr(exc, "message", "") or type(exc).__name__).split())
    return text[:200] + ("…" if len(text) > 200 else "")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, else Retry-After (seconds or HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def scrub(text: str, secret: str) -> str:
    """`text` with the API key (and anything shaped like one) masked."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return _KEY_LIKE.sub("***", text)


def scrub_samples(samples: list[Sample], secret: str) -> list[Sample]:
    """`samples` with the API key masked in their text: a server that echoes the request (its key or
    its Authorization header, "Bearer <key>") in a normal answer must not put the key into the cache
    or samples.jsonl. Only the key itself is masked here, not key-shaped strings a model may write."""
    if not secret or secret == "none" or len(secret) < 4:
        return samples
    if not any(secret in s.text or secret in (s.error or "") for s in samples):
        return samples
    import dataclasses

    return [dataclasses.replace(s, text=s.text.replace(secret, "***"),
                                error=s.error and s.error.replace(secret, "***")) for s in samples]
