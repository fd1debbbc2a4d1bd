"""`ladder play`: the playground page, a Starlette app served by uvicorn on 127.0.0.1.

Every request must carry the session's random token (`?token=` or the X-Ladder-Token header),
else 403: another local user or a web page in the browser cannot drive the playground or read it.
The page is plain HTML/JS from ladder/play/static (no CDN, no build step). A run streams its cells
as NDJSON lines the moment each arrives: each column runs on its own thread over the playground
core, so a slow or failing model never holds up the others. API keys stay in this process's
environment: the page, its requests and the session log see only the *name* of the variable.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import webbrowser
from pathlib import Path
from typing import Any

from ladder.errors import LadderError
from ladder.play.chat import chat as chat_with
from ladder.play.core import Column, Playground, model_label
from ladder.play.numbers import column_metric, paired

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def state(pg: Playground) -> dict[str, Any]:
    rows = pg.rows(pg.filter)
    cols = list(pg.columns.values())
    first = pg.scores(cols[0].id, rows) if cols else {}
    out_cols = []
    for i, c in enumerate(cols):
        mine = pg.scores(c.id, rows)
        out_cols.append({"id": c.id, "label": c.label, "model_label": model_label(c.model), "spec": c.spec(),
                         "gen": pg.generation(c).model_dump(include={"temperature", "top_p", "max_tokens", "n"}),
                         "metric": column_metric(mine),
                         "delta": paired(mine, first)["text"] if i else None})
    cells = {f"{r}|{c.id}": pg.cells[(r, c.id)].to_dict() for r in rows for c in cols if (r, c.id) in pg.cells}
    return {"experiment": pg.exp.config.name, "config": str(pg.path), "session": pg.log.session,
            "metric": None if pg.metric.needs_probabilities else pg.metric.name, "seed": pg.seed, "n": pg.n,
            "filter": pg.filter, "rows": [pg.row_view(r) for r in rows], "columns": out_cols, "cells": cells,
            "spent": round(pg.spent, 6), "budget": pg.budget, "base_model": pg.model_spec(),
            "warm": getattr(pg, "warm", False)}


def build_app(pg: Playground, token: str, opened: str) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    class TokenGate:
        """403 for any request without the session token (compared in constant time)."""

        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                req = Request(scope)
                given = req.query_params.get("token") or req.headers.get("x-ladder-token") or ""
                if not secrets.compare_digest(given.encode(), token.encode()):
                    await Response("forbidden: this playground needs the token from the URL `ladder play` printed",
                                   status_code=403)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    def problem(exc: Exception, status: int = 400) -> JSONResponse:
        text = exc.render() if isinstance(exc, LadderError) else f"{type(exc).__name__}: {exc}"
        return JSONResponse({"error": text}, status_code=status)

    async def body(req: Request) -> dict[str, Any]:
        try:
            data = await req.json()
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    async def page(req: Request) -> Response:
        name = req.path_params.get("name", "index.html")
        path = STATIC / name
        if path.suffix not in TYPES or not path.is_file() or path.parent != STATIC:
            return Response("not found", status_code=404)
        data = path.read_bytes()
        if name == "index.html":  # the script's URL needs the token too
            data = data.replace(b"static/play.js?token=", b"static/play.js?token=" + token.encode())
        return Response(data, media_type=TYPES[path.suffix],
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def get_state(req: Request) -> JSONResponse:
        return JSONResponse(state(pg))

    async def add_column(req: Request) -> JSONResponse:
        data = await body(req)
        try:
            base = pg.base_column()
            model = data.get("model")
            spec = pg.model_spec(model if model not in (None, "") else None)
            gen = {k: data["generation"][k] for k in ("temperature", "top_p", "max_tokens", "n")
                   if (data.get("generation") or {}).get(k) not in (None, "")}
            col = pg.add_column(Column(data.get("instruction", base.instruction), data.get("template", base.template),
                                       spec, gen, list(data.get("shots") or [])))
        except Exception as exc:
            return problem(exc)
        return JSONResponse({"id": col.id, "state": state(pg)})

    async def rows(req: Request) -> JSONResponse:
        data = await body(req)
        try:
            if data.get("message"):
                pg.add_message(str(data["message"]))
            if data.get("shuffle") is not None:
                pg.reshuffle(int(data["shuffle"]))
            if data.get("n") is not None:
                pg.n = max(1, min(100, int(data["n"])))
            if data.get("filter") is not None:
                pg.filter = str(data["filter"])
            if data.get("budget") is not None:
                pg.budget = max(0.0, float(data["budget"]))
        except (TypeError, ValueError) as exc:
            return problem(exc)
        return JSONResponse(state(pg))

    async def run(req: Request) -> Response:
        data = await body(req)
        ids = [c for c in data.get("columns") or list(pg.columns) if c in pg.columns]
        rows = pg.rows(pg.filter)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def one(cid: str) -> None:
            try:
                pg.run(cid, rows, lambda cell: put({"type": "cell", **cell.to_dict()}))
            except Exception as exc:  # a budget refusal: the column says so, the others go on
                put({"type": "error", "column": cid,
                     "message": exc.render() if isinstance(exc, LadderError) else f"{type(exc).__name__}: {exc}"})
            finally:
                put({"type": "column_done", "column": cid})

        for cid in ids:
            threading.Thread(target=one, args=(cid,), daemon=True).start()

        async def stream():
            left = len(ids)
            while left:
                item = await queue.get()
                left -= item["type"] == "column_done"
                yield json.dumps(item, ensure_ascii=False) + "\n"
            yield json.dumps({"type": "done", "state": state(pg)}, ensure_ascii=False) + "\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def save(req: Request) -> JSONResponse:
        from ladder.play.variant import overrides
        from ladder.play.variant import save as write

        data = await body(req)
        cid, name = data.get("column"), str(data.get("name") or "").strip()
        if cid not in pg.columns:
            return JSONResponse({"error": "no such column"}, status_code=404)
        try:
            await asyncio.to_thread(write, pg.path, name, overrides(pg, pg.columns[cid]), opened)
        except Exception as exc:
            return problem(exc, 409)
        pg.log.write({"kind": "variant", "name": name, "column": cid})
        return JSONResponse({"saved": name, "path": str(pg.path),
                             "command": f"ladder run {pg.path} --variant {name}"})

    async def chat(req: Request) -> JSONResponse:
        data = await body(req)
        try:
            specs = [pg.model_spec(m if m not in ("", None) else None) for m in data.get("models") or [None]]
            # `threads`: each model's own conversation; `turns`: one conversation sent to every model.
            threads = data.get("threads") or [data.get("turns") or []] * len(specs)
            turns = [[{"role": t["role"], "content": str(t["content"])} for t in thread
                      if t.get("role") in ("user", "assistant")] for thread in threads]
            if len(turns) != len(specs):
                raise ValueError(f"{len(turns)} conversations for {len(specs)} models")
        except Exception as exc:
            return problem(exc)
        replies = await asyncio.to_thread(chat_with, pg, str(data.get("system") or ""), turns, specs)
        return JSONResponse({"replies": replies, "spent": round(pg.spent, 6)})

    routes = [Route("/", page), Route("/static/{name}", page), Route("/api/state", get_state),
              Route("/api/column", add_column, methods=["POST"]), Route("/api/rows", rows, methods=["POST"]),
              Route("/api/run", run, methods=["POST"]), Route("/api/save", save, methods=["POST"]),
              Route("/api/chat", chat, methods=["POST"])]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate)])


def serve(config: Path, sets: list[str], *, n: int, budget: float, port: int, host: str, browser: bool,
          new: bool, ready: Any = None) -> None:
    """Open the playground and serve it until Ctrl-C. `ready(url)` is called once it listens."""
    import socket

    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise LadderError(f"`ladder play` needs the web server packages, and {exc.name} is not installed",
                          fix="pip install 'starlette>=0.37' 'uvicorn>=0.29' (dependencies of ladder since the "
                              "playground; `pip install -e .` installs them), or use `ladder try` in the terminal") from None

    from ladder.play.variant import digest

    opened = digest(config)
    pg = Playground(config, sets, n=n, budget=budget, resume=not new)
    token = secrets.token_urlsafe(24)
    if host != "127.0.0.1":
        print(f"warning: binding {host}: other machines can reach the page (each still needs the token)")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    sock.listen(128)  # connections wait from now on, even before uvicorn accepts the first
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{sock.getsockname()[1]}/?token={token}"
    app = build_app(pg, token, opened)

    def warm() -> None:  # load the SDK (or the local model) and check the server while the page opens
        try:
            pg.backend(pg.base_column())
        except Exception:  # the first run shows why, in the cells
            pass
        pg.warm = True

    threading.Thread(target=warm, daemon=True).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    print(f"playground for {config} (session {pg.log.session}): {url}", flush=True)
    print("every request needs the token above; Ctrl-C stops it (the session is kept in "
          f"{pg.log.path})", flush=True)
    if ready:
        ready(url)
    if browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
