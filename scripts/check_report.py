"""Open an HTML page the way a person would — in headless Chromium — and check it.

Drives /usr/bin/chromium over the Chrome DevTools protocol (websocket-client): loads the page
from disk with every network request recorded, waits for the plotly figures to draw, collects
console errors, uncaught exceptions and failed loads, and saves a full-page screenshot.

    python scripts/check_report.py results/quickstart/report.html --screenshot /tmp/report.png

For a report (a page beside a summary.csv, or --results): also drives the sample browser —
applies each filter (wrong in any stage, stages disagree, changed between each pair of stages, a
search) and checks the examples it shows against counts made from samples.jsonl on disk — checks
that curves over training steps have linear x axes, and that nothing hides behind a horizontal
scrollbar.

Exit status 1 when the page has console errors, asked the network for anything (it must open
offline) or fails one of the report's checks. tests/test_report.py and tests/test_atlas.py call `check_page` directly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0"]
LOCAL = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")
# What the page shows once drawn: plotly figures with their SVG, table rows, headings.
PROBE = """(() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return JSON.stringify({
    plots: plots.length,
    drawn: plots.filter(p => p.querySelector('.main-svg') && p._fullLayout).length,
    points: [...document.querySelectorAll('.js-plotly-plot .point')].length,
    rows: document.querySelectorAll('table.stages tbody tr').length,
    headings: [...document.querySelectorAll('h1, h2')].map(h => h.textContent),
    buttons: [...document.querySelectorAll('.updatemenu-button')].map(b => b.textContent),
    colorbars: document.querySelectorAll('.colorbar').length,
    height: document.documentElement.scrollHeight,
    // Each figure's x axes: a curve over training steps must be linear (layout.meta.curve_kind).
    axes: plots.map(p => ({title: ((p.layout.title || {}).text || ''), kind: (p.layout.meta || {}).curve_kind || null,
                           x: Object.keys(p._fullLayout || {}).filter(k => /^xaxis\\d*$/.test(k)).sort()
                                .map(k => p._fullLayout[k].type)})),
    // Content wider than its box hides behind a scrollbar (the table's flags column once did).
    clipped: [...document.querySelectorAll('.wide')].filter(e => e.scrollWidth > e.clientWidth + 1).length,
  });
})()"""


def click(text: str) -> str:
    """JavaScript that clicks the plotly menu button showing `text` (plotly listens on mouse events)."""
    return (f"[...document.querySelectorAll('.updatemenu-button')].filter(b => b.textContent === {json.dumps(text)})"
            ".forEach(b => b.dispatchEvent(new MouseEvent('click', {bubbles: true})))")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and failed resource loads."""
    requests: list[str] = field(default_factory=list)
    """URLs the page asked the network for (an offline page asks for none)."""
    page: dict[str, Any] = field(default_factory=dict)
    """What PROBE saw: plots, drawn plots, table rows, headings, buttons."""
    screenshot: Path | None = None
    inspected: Any = None
    """What the `inspect` callback returned (e.g. the sample browser's counts per filter)."""


class _DevTools:
    """Just enough of the DevTools protocol: commands by id, events collected on the way."""

    def __init__(self, url: str, timeout: float):
        import websocket

        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while not any(e["method"] == event for e in self.events):
            if time.time() > deadline:
                raise TimeoutError(f"no {event} within {timeout:.0f} s")
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)


def check_page(page: Path, screenshot: Path | None = None, *, width: int = 1400, timeout: float = 90,
               chromium: str | None = None, then: str | None = None,
               inspect: Callable[[Callable[[str], Any]], Any] | None = None) -> PageCheck:
    """Load `page`, let it draw, run the JavaScript `then` (e.g. click a button) and look again.
    `inspect(evaluate)` may then drive the page itself (evaluate(js) → the value of js)."""
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install -y chromium)")
    profile = Path(tempfile.mkdtemp(prefix="ladder-chromium-"))
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, proc, timeout)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
        tab = next(t for t in targets if t.get("type") == "page")
        dt = _DevTools(tab["webSocketDebuggerUrl"], timeout)
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(f"{domain}.enable")
        dt.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        dt.call("Page.navigate", url=page.resolve().as_uri())
        dt.wait_for("Page.loadEventFired", timeout)
        state = _settle(dt, timeout)
        if then:
            dt.call("Runtime.evaluate", expression=then)
            state = _settle(dt, timeout)
        result = PageCheck(page=state)
        if inspect is not None:
            result.inspected = inspect(lambda js: dt.call("Runtime.evaluate", expression=js,
                                                          returnByValue=True)["result"].get("value"))
        if screenshot is not None:
            height = min(int(state["height"]), 16_000)
            dt.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            time.sleep(0.5)  # plotly's responsive figures redraw on the resize
            shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            import base64

            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        dt.call("Runtime.evaluate", expression="1")  # drain events that arrived meanwhile
        result.errors, result.requests = _problems(dt.events)
        dt.ws.close()
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"  # chromium writes its chosen port here
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before opening DevTools")
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


def _settle(dt: _DevTools, timeout: float) -> dict[str, Any]:
    """Poll until every plotly figure has drawn and the page stops changing."""
    deadline, last = time.time() + timeout, None
    while True:
        state = json.loads(dt.call("Runtime.evaluate", expression=PROBE, returnByValue=True)["result"]["value"])
        if state["drawn"] == state["plots"] and state == last:
            return state
        if time.time() > deadline:
            return state
        last = state
        time.sleep(0.3)


def _problems(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for e in events:
        method, p = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("uncaught: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent" and not p["request"]["url"].startswith(LOCAL):
            requests.append(p["request"]["url"])
    return errors, requests


# ---------------------------------------------------------------------------------------------
# The report's sample browser, against the samples on disk

# Sets the browser's controls as a person would (radio, selects, search box, each firing its
# event) and reads back what it shows: the filtered total and the rows on the visible page.
BROWSE = """((f, a, b, q) => {
  const root = document.getElementById('samples');
  if (!root) return null;
  const t0 = performance.now();
  document.getElementById('sf-a').value = String(a);
  document.getElementById('sf-b').value = String(b);
  document.getElementById('sf-a').dispatchEvent(new Event('change'));
  document.getElementById('sf-b').dispatchEvent(new Event('change'));
  const box = document.getElementById('sf-q');
  box.value = q;
  box.dispatchEvent(new Event('input'));
  const radio = root.querySelector('input[name=sf][value=' + f + ']');
  radio.checked = true;
  radio.dispatchEvent(new Event('change'));
  return JSON.stringify({total: +root.dataset.total, rows: root.querySelectorAll('tbody tr').length,
                         ms: Math.round(performance.now() - t0),
                         stages: [...document.getElementById('sf-a').options].map(o => o.textContent)});
})"""


SLOW_MS = 1500
"""Setting a filter (four redraws: two selects, the search box, the radio) must feel immediate."""


def _answer(d: dict[str, Any]) -> str:
    """A record's answer, as the browser defines it: best_of_n's `answer`, else the kept
    (selected, else first) sample's extraction, else its text; stripped."""
    if d.get("answer") is not None:
        return str(d["answer"]).strip()
    samples = d.get("samples") or []
    if not samples:
        return ""
    sel = d.get("selected")
    s = samples[sel if isinstance(sel, int) and sel < len(samples) else 0]
    return str(s["extracted"] if s.get("extracted") is not None else s.get("text", "")).strip()


def samples_on_disk(folder: Path) -> tuple[list[str], dict[str, dict[str, dict[str, Any]]]]:
    """Stage names in table order, and example id → stage → its samples.jsonl record."""
    import csv

    with open(folder / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    stages, examples = [], {}
    for row in rows:
        path = folder / row["stage"] / row["run_id"] / "samples.jsonl"
        if not path.exists():
            continue
        stages.append(row["stage"])
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                examples.setdefault(str(d["id"]), {})[row["stage"]] = d
    return stages, examples


def expected_counts(folder: Path, query: str) -> dict[str, int]:
    """How many examples each filter must show, counted from samples.jsonl."""
    stages, examples = samples_on_disk(folder)

    def wrong(d: dict[str, Any]) -> bool:
        return bool(d.get("error")) or d.get("score") is None or d["score"] < 1

    def user(d: dict[str, Any]) -> str:
        return next((m["content"] for m in reversed(d.get("prompt") or []) if m.get("role") == "user"), "")

    def found(i: str, recs: dict[str, dict[str, Any]]) -> bool:
        first = next(iter(recs.values()))
        target = first.get("target")
        hay = [i, user(first), target if isinstance(target, str) else json.dumps(target, ensure_ascii=False),
               *(_answer(d) for d in recs.values())]
        return query.lower() in "\n".join(hay).lower()

    out = {"all": len(examples), "wrong": sum(any(map(wrong, r.values())) for r in examples.values()),
           # report_samples.stages_disagree: the stages scored the example differently
           "disagree": sum(len({round(float(d["score"]), 9) for d in r.values()
                                if d.get("score") is not None and not d.get("error")}) > 1
                           for r in examples.values()),
           f"search:{query}": sum(found(i, r) for i, r in examples.items())}
    for a in range(len(stages)):
        for b in range(a + 1, len(stages)):
            out[f"changed:{a}:{b}"] = sum(stages[a] in r and stages[b] in r and
                                          _score(r[stages[a]]) != _score(r[stages[b]]) for r in examples.values())
    out["stages"] = stages  # type: ignore[assignment]
    return out


def _score(d: dict[str, Any]) -> float | None:
    s = d.get("score")
    return None if s is None else round(float(s), 4)  # as the page embeds it


def browse(evaluate: Callable[[str], Any], stages: int, query: str, page_size: int = 100) -> dict[str, Any]:
    """Apply every filter in the page's sample browser; per filter: (total shown, rows on page 1)."""
    seen: dict[str, Any] = {}

    def look(key: str, f: str, a: int = 0, b: int = 0, q: str = "") -> None:
        got = evaluate(f"{BROWSE}({json.dumps(f)}, {a}, {b}, {json.dumps(q)})")
        seen[key] = None if got is None else json.loads(got)

    look("all", "all")
    look("wrong", "wrong")
    look("disagree", "disagree")
    look(f"search:{query}", "all", q=query)
    for a in range(stages):
        for b in range(a + 1, stages):
            look(f"changed:{a}:{b}", "changed", a, b)
    look("reset", "all", 0, max(stages - 1, 0))
    return seen


def check_report(page: Path, folder: Path | None = None, screenshot: Path | None = None,
                 **kwargs: Any) -> tuple[PageCheck, list[str]]:
    """check_page, then the report's own checks: the sample browser's counts for every filter match
    the samples on disk, step axes are linear, nothing hides behind a horizontal scrollbar. Returns
    the page check and the problems found (console errors and network requests included)."""
    folder = folder or page.parent
    stages, examples = samples_on_disk(folder)
    # A search for an id that is a prefix of others (test-1 finds test-10, test-11, ...).
    query = min(examples, key=len) if examples else "x"
    want = expected_counts(folder, query)
    result = check_page(page, screenshot, inspect=lambda ev: browse(ev, len(stages), query), **kwargs)
    problems = [f"console/page error: {e}" for e in result.errors] + [f"network request: {u}" for u in result.requests]
    seen = result.inspected or {}
    if examples and not seen.get("all"):
        problems.append("no sample browser on the page")
    else:
        for key, n in want.items():
            if key == "stages":
                continue
            got = seen.get(key) or {}
            if got.get("total") != n:
                problems.append(f"sample browser, filter {key}: shows {got.get('total')} examples, "
                                f"samples.jsonl has {n}")
            elif got.get("ms", 0) > SLOW_MS:
                problems.append(f"sample browser, filter {key}: took {got['ms']} ms (over {SLOW_MS})")
            elif got.get("rows") != min(n, 100):
                problems.append(f"sample browser, filter {key}: {got.get('rows')} rows on the page for {n} examples")
        if examples and seen["all"].get("stages") != stages:
            problems.append(f"sample browser stages {seen['all'].get('stages')} != {stages}")
    for fig in result.page.get("axes", []):
        if fig["kind"] == "step" and "log" in fig["x"]:
            problems.append(f"figure {fig['title']!r}: a step axis drawn on a log scale")
    if result.page.get("clipped"):
        problems.append("content wider than its box (hidden behind a horizontal scrollbar)")
    return result, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--click", help="text of a button to click before looking, e.g. 'colour: score'")
    parser.add_argument("--results", type=Path, default=None,
                        help="the experiment folder of a report (default: the page's folder when it has a "
                             "summary.csv): its sample browser is checked against the samples on disk")
    args = parser.parse_args()
    then = click(args.click) if args.click else None
    folder = args.results or (args.page.parent if (args.page.parent / "summary.csv").exists() else None)
    if folder is None:  # not a report (e.g. atlas.html on its own): the page checks only
        result = check_page(args.page, args.screenshot, then=then)
        problems = [*result.errors, *result.requests]
    else:
        result, problems = check_report(args.page, folder, args.screenshot, then=then)
    print(json.dumps({"page": result.page, "errors": result.errors, "requests": result.requests,
                      "browser": result.inspected, "problems": problems,
                      "screenshot": str(result.screenshot) if result.screenshot else None}, indent=2))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
