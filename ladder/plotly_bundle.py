"""Which plotly.js a page inlines: the smallest official bundle that draws every trace in it.

The report and the atlas are single files that open offline, so plotly.js is inlined. The full
bundle (what `plotly.offline.get_plotlyjs` gives) is 4.8 MB; the pages draw scatter and bar traces
(scattergl only for atlases over 20,000 points), which plotly's own "basic" partial bundle
(`plotly.js-basic-dist-min` on npm: bar, pie, scatter; 1.2 MB) covers. The basic bundle ships in
ladder/assets/plotly at the same plotly.js version as the plotly package's full bundle; a page with
any other trace type, or a plotly package whose plotly.js is another version (its figure JSON is
written for that version), gets the full bundle, so every chart keeps working.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

BASIC = Path(__file__).parent / "assets" / "plotly" / "plotly-basic.min.js"
_NEW_PLOT = re.compile(r'Plotly\.newPlot\(\s*"[^"]*",\s*')
_TRACE_MODULE = re.compile(r'moduleType:"trace",name:"([a-z0-9]+)"')
_VERSION = re.compile(r"plotly\.js(?: \([a-z -]+\))? v(\d+\.\d+\.\d+)")


def used_traces(html: str) -> set[str]:
    """The trace types the figures in `html` draw: the `type` of each trace in the data argument of
    every `Plotly.newPlot(id, data, layout)` call (plotly's to_html writes one per figure; the
    layout's template names every trace type there is, so a plain search would find them all)."""
    decoder = json.JSONDecoder()
    found: set[str] = set()
    for call in _NEW_PLOT.finditer(html):
        data, _ = decoder.raw_decode(html, call.end())
        found |= {trace.get("type", "scatter") for trace in data}  # plotly's default type
    return found


def bundled_traces(js: str) -> frozenset[str]:
    """The trace types a plotly.js bundle registers (each trace module declares its name)."""
    return frozenset(_TRACE_MODULE.findall(js))


def version(js: str) -> str | None:
    m = _VERSION.search(js[:400])
    return m.group(1) if m else None


@cache
def _full() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@cache
def _basic() -> str | None:
    try:
        js = BASIC.read_text(encoding="utf-8")
    except OSError:
        return None
    return js if version(js) is not None and version(js) == version(_full()) else None


def script_for(body: str) -> str:
    """A <script> with the plotly.js that draws every figure in `body`: the basic bundle when it
    covers them (and matches the plotly package's version), the full one otherwise."""
    basic = _basic()
    js = basic if basic is not None and used_traces(body) <= bundled_traces(basic) else _full()
    return f"<script>{js}</script>"
