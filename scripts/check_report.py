"""Open an HTML page the way a person would — in headless Chromium — and check it.

Drives /usr/bin/chromium over the Chrome DevTools protocol (websocket-client): loads the page
from disk with every network request recorded, waits for the plotly figures to draw, collects
console errors, uncaught exceptions and failed loads, and saves a full-page screenshot.

    python scripts/check_report.py results/quickstart/report.html --screenshot /tmp/report.png

Exit status 1 when the page has console errors or asked the network for anything (it must open
offline). tests/test_report.py and tests/test_atlas.py call `check_page` directly.
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
from typing import Any

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
               chromium: str | None = None, then: str | None = None) -> PageCheck:
    """Load `page`, let it draw, run the JavaScript `then` (e.g. click a button) and look again."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--click", help="text of a button to click before looking, e.g. 'colour: score'")
    args = parser.parse_args()
    result = check_page(args.page, args.screenshot, then=click(args.click) if args.click else None)
    print(json.dumps({"page": result.page, "errors": result.errors, "requests": result.requests,
                      "screenshot": str(result.screenshot) if result.screenshot else None}, indent=2))
    raise SystemExit(1 if result.errors or result.requests else 0)


if __name__ == "__main__":
    main()
