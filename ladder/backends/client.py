"""The SDK client's plumbing for the HTTP API backends (api.py's request loop uses it), built once
per process rather than per client or stage: the TLS context, whether aiohttp is there and the
response class. CPU per request is what keeps a run from the ideal time (all requests share one
event loop, and a burst of responses queues for it; scripts/bench_api.py), so the garbage
collector is also kept off the objects that existed before a run (gc.freeze) while it lasts."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
from functools import cache
from typing import Any, Callable


def freeze_heap() -> bool:
    """Keep the objects that exist now (the SDKs' modules and types alone are ~200k) out of the
    cyclic garbage collector's scans until gc.unfreeze(): a full collection over them takes ~60 ms,
    a stall of the one event loop that every response in flight waits behind. Objects are still
    freed by reference counting meanwhile; cycles among them are collected after unfreeze(). False
    (nothing done) when gc is off or the program froze objects itself (its freeze is its own)."""
    if not gc.isenabled() or gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def tls_settings(limits_class: type) -> dict[str, Any]:
    """`verify=` for the SDK's HTTP client: the TLS context it would build itself (the SDK's httpx
    `create_ssl_context()`, with SSL_CERT_FILE / SSL_CERT_DIR), built once per process instead of
    once per client: loading the CA bundle takes ~50 ms, paid at every stage's start. Empty (the
    client builds its own) where that httpx has no create_ssl_context."""
    httpx = importlib.import_module(limits_class.__module__.split(".")[0])
    make = getattr(httpx, "create_ssl_context", None)
    if make is None:
        return {}
    return {"verify": _ssl_context(make, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))}


@cache
def _ssl_context(make: Callable[[], Any], cert_file: str | None, cert_dir: str | None) -> Any:
    return make()  # the environment it reads is part of the key


@cache
def aiohttp_installed() -> bool:
    # The SDKs' aiohttp client needs only aiohttp itself (each SDK vendors its httpx adapter).
    return importlib.util.find_spec("aiohttp") is not None


@cache
def response_class(sdk: Any) -> type:
    # cast_to=<the SDK's httpx>.Response: the SDK hands its response back as is (the body already
    # read, as for bytes), so the rate-limit headers come with it at no extra cost.
    return importlib.import_module(type(sdk.DEFAULT_CONNECTION_LIMITS).__module__.split(".")[0]).Response
