"""Drive `ladder play` in real headless Chromium against the fake OpenAI server, end to end.

    python scripts/check_play.py                       # exit 0 when every step checks out
    python scripts/check_play.py --screenshot docs/playground.png

Steps, each done the way a person does it (typing in the page's fields, clicking, pressing the
page's keyboard shortcuts), each checked against what the server and the files say:

1. open the printed URL; the grid shows the experiment's column and rows;
2. edit the instruction and the model (fake-lazy) → new column (n) → run (Ctrl+Enter): every cell
   of both columns filled with the server's answers (fake-good: the review's label; fake-lazy:
   "neutral"), each with its metric, n and CI;
3. pin two rows as shots (j, p) → new column (n) → run: the new column's answers differ from the
   unpinned one's (fake-lazy repeats the last shot's answer);
4. save the pinned column as a variant (s): the YAML keeps its comments, loads, and
   `ladder run exp.yaml --variant NAME` scores the page's rows exactly as the page did;
5. chat: two turns to two models side by side, each answering in its own conversation;
6. throughout: no console error, no failed or refused request, no request anywhere but the
   playground itself; the API key appears nowhere in the page, its requests or the session log;
   a request without the token gets 403.

Exit status 1 on any failure, with what went wrong. tests/play/test_check_play.py runs it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.check_report import FLAGS, _devtools_port, _DevTools, find_chromium  # noqa: E402
from tests.backends.api_support import KEY, KEY_ENV, sentiment  # noqa: E402

READ = """JSON.stringify({ready: document.body.dataset.ready || null, runs: +(document.body.dataset.runs || 0),
  saved: document.body.dataset.saved || null, banner: document.getElementById('banner').textContent,
  columns: S ? S.columns.map(c => ({id: c.id, label: c.label, model: c.model_label, metric: c.metric, delta: c.delta,
                                    shots: c.spec.shots.length})) : [],
  rows: S ? S.rows.map(r => ({id: r.id, text: r.text, target: r.target})) : [],
  cells: S ? S.cells : {},
  filled: document.querySelectorAll('td.out:not(:empty)').length,
  html: document.documentElement.outerHTML})"""


class Failed(Exception):
    pass


def key(dt: _DevTools, key_: str, code: str, ctrl: bool = False) -> None:
    mods = 2 if ctrl else 0
    for kind in ("keyDown", "keyUp"):
        dt.call("Input.dispatchKeyEvent", type=kind, key=key_, code=code, modifiers=mods,
                text=key_ if kind == "keyDown" and len(key_) == 1 else "",
                windowsVirtualKeyCode=13 if key_ == "Enter" else ord(key_.upper()) if len(key_) == 1 else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--timeout", type=float, default=90)
    args = ap.parse_args()
    try:
        check(args.screenshot, args.timeout)
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 1
    print("OK: the playground page checks out")
    return 0


def check(screenshot: Path | None, timeout: float) -> None:
    from ladder.store import read_jsonl
    from ladder.testing.fake_api import FakeAPIServer
    from tests.play.support import fake_experiment, responder

    exe = find_chromium()
    if exe is None:
        raise Failed("no chromium on PATH (Debian: apt-get install -y chromium)")
    tmp = Path(tempfile.mkdtemp(prefix="check-play-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: KEY, "LADDER_CACHE_DIR": str(tmp / "cache")}
    with FakeAPIServer(responder=responder) as srv:
        cfg = fake_experiment(tmp, srv.base_url)
        cfg.write_text("# the playground's check: this comment must survive the save\n" + cfg.read_text())
        play = subprocess.Popen([sys.executable, "-m", "ladder.cli", "play", str(cfg), "--no-browser", "--new",
                                 "--n", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        profile = Path(tempfile.mkdtemp(prefix="ladder-chromium-"))
        chrome = None
        try:
            url = play.stdout.readline().strip().rsplit(" ", 1)[-1]
            if "token=" not in url:
                raise Failed(f"ladder play printed no URL: {url!r} {play.stderr.read()[-2000:] if play.poll() else ''}")
            root = url.split("/?")[0]
            for bad in (root + "/", root + "/api/state", root + "/api/state?token=wrong"):
                try:
                    urllib.request.urlopen(bad, timeout=10)
                    raise Failed(f"{bad} answered without the token")
                except urllib.error.HTTPError as exc:
                    if exc.code != 403:
                        raise Failed(f"{bad}: {exc.code}, not 403") from None
            chrome = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port = _devtools_port(profile, chrome, timeout)
            tab = next(t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
                       if t.get("type") == "page")
            dt = _DevTools(tab["webSocketDebuggerUrl"], timeout)
            for domain in ("Page", "Runtime", "Log", "Network"):
                dt.call(f"{domain}.enable")
            dt.call("Emulation.setDeviceMetricsOverride", width=1500, height=1000, deviceScaleFactor=1, mobile=False)
            dt.call("Page.navigate", url=url)

            def ev(js: str):
                got = dt.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True)
                if "exceptionDetails" in got:
                    raise Failed(f"page script failed: {got['exceptionDetails'].get('text')}")
                return got["result"].get("value")

            def read() -> dict:
                return json.loads(ev(READ))

            def wait(what: str, ok, secs: float = timeout) -> dict:
                deadline = time.time() + secs
                while True:
                    try:
                        state = read()
                    except (Failed, ValueError, TypeError):
                        state = None
                    if state is not None and ok(state):
                        return state
                    if time.time() > deadline:
                        raise Failed(f"timed out waiting for {what}; banner: {state and state['banner']!r}")
                    time.sleep(0.1)

            def type_into(element: str, text: str) -> None:
                ev(f"(() => {{ const e = document.getElementById({json.dumps(element)}); e.focus(); e.select && e.select(); }})()")
                ev(f"document.getElementById({json.dumps(element)}).value = ''")
                dt.call("Input.insertText", text=text)
                ev(f"document.getElementById({json.dumps(element)}).dispatchEvent(new Event('change'))")
                ev("document.activeElement.blur()")

            state = wait("the page to load", lambda s: s["ready"] and s["columns"])
            if len(state["rows"]) != 8:
                raise Failed(f"{len(state['rows'])} rows shown, not 8")

            # 2. edit the instruction and the model, new column, run everything
            type_into("instruction", "Label the review.")
            type_into("model", "fake-lazy")
            key(dt, "n", "KeyN")
            wait("the new column", lambda s: len(s["columns"]) == 2)
            key(dt, "Enter", "Enter", ctrl=True)
            state = wait("the first run", lambda s: s["runs"] >= 1)
            check_cells(state, expect={0: "good", 1: "lazy"})
            lazy = state["columns"][1]

            # 3. pin two rows as shots, new column, run: its answers differ from the unpinned column's
            ev("document.querySelector('tr[data-row=\"0\"] td').click()")
            key(dt, "p", "KeyP")
            key(dt, "j", "KeyJ")
            key(dt, "p", "KeyP")
            key(dt, "n", "KeyN")
            state = wait("the pinned column", lambda s: len(s["columns"]) == 3)
            pinned = state["columns"][2]
            if pinned["shots"] != 2:
                raise Failed(f"the new column has {pinned['shots']} shots, not 2")
            key(dt, "Enter", "Enter", ctrl=True)
            state = wait("the second run", lambda s: s["runs"] >= 2)
            check_cells(state, expect={0: "good", 1: "lazy", 2: "shots"})
            before = {r["id"]: state["cells"][f"{r['id']}|{lazy['id']}"]["outputs"] for r in state["rows"]}
            after = {r["id"]: state["cells"][f"{r['id']}|{pinned['id']}"]["outputs"] for r in state["rows"]}
            if before == after:
                raise Failed("pinning shots changed no answer")

            # 4. save the pinned column as a variant; `ladder run --variant` reproduces its numbers
            type_into("variant-name", "from_play")
            key(dt, "s", "KeyS")
            state = wait("the save", lambda s: s["saved"] or "error" in s["banner"].lower())
            if state["saved"] != "from_play":
                raise Failed(f"save refused: {state['banner']}")
            text = cfg.read_text()
            if not text.startswith("# the playground's check") or "from_play" not in text:
                raise Failed("the saved YAML lost its comment or has no variant")
            if screenshot is not None:
                shot = dt.call("Page.captureScreenshot", format="png")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            page_scores = {r["id"]: state["cells"][f"{r['id']}|{pinned['id']}"]["score"] for r in state["rows"]}
            run = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(cfg), "--variant", "from_play"],
                                 env=env, capture_output=True, text=True, timeout=300)
            if run.returncode != 0:
                raise Failed(f"ladder run --variant from_play exited {run.returncode}: {run.stderr[-2000:]}")
            (samples,) = (tmp / "results" / "t" / "variants" / "from_play" / "few_shot").glob("*/samples.jsonl")
            scored = {r["id"]: r["score"] for r in read_jsonl(samples)}
            if {i: scored.get(i) for i in page_scores} != page_scores:
                raise Failed(f"ladder run scored the page's rows {scored} differently from the page {page_scores}")

            # 5. chat: one message to two models side by side, then a second turn
            key(dt, "c", "KeyC")
            type_into("chat-models", "fake-good, fake-lazy")
            for turn in ("Review: a superb meal", "Review: and a rude waiter"):
                ev("document.getElementById('chat-input').focus()")
                dt.call("Input.insertText", text=turn)
                key(dt, "Enter", "Enter")
                wait("the chat replies", lambda s, t=turn: ev(
                    "document.querySelectorAll('#turns .replies').length") == (1 if "superb" in t else 2))
            replies = ev("[...document.querySelectorAll('#turns .reply')].map(r => r.textContent)")
            if replies != ["openai:fake-goodpositive", "openai:fake-lazyneutral",
                           "openai:fake-goodnegative", "openai:fake-lazyneutral"]:
                raise Failed(f"chat replies: {replies}")

            # 6. no console error, no failed request, nothing fetched elsewhere, no key anywhere
            dt.call("Runtime.evaluate", expression="1")
            problems = network_problems(dt.events, root)
            if problems:
                raise Failed("; ".join(problems[:10]))
            if KEY in state["html"] or KEY in json.dumps(dt.events):
                raise Failed("the API key reached the page or its requests")
            for path in (tmp / "results" / "t" / "playground").glob("*.jsonl"):
                if KEY in path.read_text():
                    raise Failed(f"the API key is in {path}")
            dt.ws.close()
        finally:
            if chrome is not None:
                chrome.terminate()
                chrome.wait(timeout=10)
            play.terminate()
            play.wait(timeout=10)
            shutil.rmtree(profile, ignore_errors=True)


def check_cells(state: dict, expect: dict[int, str]) -> None:
    """Every cell of the listed columns filled with what the fake server answers for that row."""
    for j, kind in expect.items():
        col = state["columns"][j]
        shots = None
        for r in state["rows"]:
            cell = state["cells"].get(f"{r['id']}|{col['id']}")
            if cell is None or cell["error"] or not cell["outputs"]:
                raise Failed(f"column {col['label']} {col['model']}: row {r['id']} not filled ({cell})")
            got = cell["outputs"][0]
            if kind == "good":
                want = sentiment(type("R", (), {"prompt": r["text"]})(), 0)
            elif kind == "lazy":
                want = "neutral"
            else:
                shots = shots or [state["rows"][0]["target"], state["rows"][1]["target"]]
                want = shots[-1]
            if got != want:
                raise Failed(f"column {col['label']} {col['model']}: row {r['id']} shows {got!r}, the server answers {want!r}")
        if col["metric"]["n"] != len(state["rows"]):
            raise Failed(f"column {col['label']}: metric over n={col['metric']['n']}, not {len(state['rows'])}")


def network_problems(events: list[dict], root: str) -> list[str]:
    out = []
    for e in events:
        method, p = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append("uncaught: " + (p["exceptionDetails"].get("exception", {}).get("description") or ""))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent" and not p["request"]["url"].startswith((root, "data:", "about:")):
            out.append(f"request elsewhere: {p['request']['url']}")
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            out.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"failed request: {p.get('errorText')}")
    return out


if __name__ == "__main__":
    sys.exit(main())
