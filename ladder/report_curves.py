"""The report's curves: each stage's typed curves (`StageResult.curves`), older `extra` shapes
guessed, and one plotly figure per curve.

Curves come from each stage's metrics.json `extra`. The declared shape (best_of_n, sft, rl and
reward_model write this, `ladder.types.Curve`):

    extra["curves"] = {
        "reward_vs_n": {"x": [1, 2, 4, 8], "y": {"selector": [...], "metric": [...]},
                        "xlabel": "N", "ylabel": "score", "kind": "n"},
        "loss": {"x": [0, 10, 20], "y": {"train": [...], "test": [...]}, "xlabel": "step",
                 "ylabel": "loss", "hlines": {"chance −log(1/K)": 1.0986}},
    }

`y` may also be a single list. Anything else in `extra` that looks like a curve is drawn too,
up to two levels deep (results written before curves were typed):
  - a list of points: [{"k": 1, "selector": 0.3, "kl_bound": 0.0}, ...] (x from x/k/n/step/epoch/...);
  - a dict of equal-length number lists: {"step": [...], "loss": [...], "accuracy": [...]};
  - a list of [x, y] pairs: [[10, 2.1], [20, 1.7]]; or a plain list of numbers (x = index).
A number in `extra`, or one level down, whose key names "chance" (e.g. "chance_loss": 1.0986)
becomes a dashed line on that stage's loss curves (unless a line at that height is already drawn),
except on a curve whose spec declares its own `hlines` (even none): it gets exactly those. (sft's
chance is chance for the loss over the answer choices, not for its train loss.)

How they are drawn: x is linear over training steps and logarithmic only over N (kind "n", when
it spans ≥ 16×); series of different kinds (loss / kl / the rest) get side-by-side panels; series
that are equal point for point are drawn once and named together; a reward over many steps gets
an EMA over its faint raw line; counts (tokens) and KL start at 0.
"""

from __future__ import annotations

import html
import math
from typing import Any

from ladder.types import BEST_OF_K_LABELS as POINT_LABELS
from ladder.types import Curve, StageResult

X_KEYS = ("x", "k", "n", "step", "steps", "epoch", "iteration", "iter", "round")
MAX_CURVES = 24
"""Per stage: more is almost certainly not a set of curves but some other list data."""
EMA_ALPHA = 0.1
"""Weight of each new point in the smoothed reward: about the last 1/α = 10 steps."""
EMA_MIN_POINTS = 10
"""Fewer points than this are drawn raw: there is nothing to smooth."""


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 2 and all(_num(e) or e is None for e in v) and any(_num(e) for e in v)


def _kind_of(xlabel: str) -> str:
    """An undeclared curve's kind, for results written before curves were typed."""
    return "n" if xlabel.lower() in ("n", "k") else "step"


def _from_columns(name: str, cols: dict[str, list], xlabel: str = "", ylabel: str = "") -> Curve | None:
    lists = {k: v for k, v in cols.items() if _numbers(v)}
    lengths = {len(v) for v in lists.values()}
    if not lists or len(lengths) != 1:
        return None
    xkey = next((k for k in X_KEYS if k in lists), None)
    series = {k: v for k, v in lists.items() if k not in X_KEYS}  # an epoch beside a step is an axis too
    if not series:
        return None
    x = lists[xkey] if xkey else list(range(lengths.pop()))
    xlabel = xlabel or (xkey or "index")
    return Curve(name=name, x=x, series=series, kind=_kind_of(xlabel), xlabel=xlabel, ylabel=ylabel)


def _from_spec(name: str, spec: dict[str, Any]) -> Curve | None:
    """The documented shape: {"x": [...], "y": [...] | {series: [...]}, xlabel, ylabel, hlines, kind}."""
    y = spec.get("y")
    series = y if isinstance(y, dict) else {spec.get("ylabel") or name: y}
    curve = _from_columns(name, {"x": spec.get("x"), **series}, spec.get("xlabel", ""), spec.get("ylabel", ""))
    if curve is None and isinstance(spec.get("points"), list):
        curve = _from_points(name, spec["points"])
    if curve is not None:
        curve.hlines = {k: float(v) for k, v in (spec.get("hlines") or {}).items() if _num(v)}
        if spec.get("kind") in ("step", "n"):
            curve.kind = spec["kind"]
    return curve


def _from_points(name: str, points: list) -> Curve | None:
    if len(points) < 2 or not all(isinstance(p, dict) for p in points):
        return None
    keys = [k for k in points[0] if all(_num(p.get(k)) or p.get(k) is None for p in points)]
    return _from_columns(name, {POINT_LABELS.get(k, k): [p.get(k) for p in points] for k in keys})


def curves_of(extra: dict[str, Any]) -> list[Curve]:
    """Every curve-like entry of a metrics.json `extra` (see the module docstring)."""
    out: list[Curve] = []
    specs = extra.get("curves")
    declared: set[str] = set()  # curves that say which reference lines they have
    if isinstance(specs, dict):
        declared = {name for name, spec in specs.items() if isinstance(spec, dict) and "hlines" in spec}
        for name, spec in specs.items():
            curve = _from_spec(name, spec) if isinstance(spec, dict) else None
            if curve is None and isinstance(spec, (dict, list)):
                curve = _guess(name, spec)
            if curve is not None:
                out.append(curve)

    def walk(node: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in node.items():
            if key == "curves" and not prefix:
                continue
            name = f"{prefix}{key}"
            curve = _guess(name, value)
            if curve is not None:
                out.append(curve)
            elif isinstance(value, dict) and depth < 2:
                walk(value, f"{name}.", depth + 1)

    walk(extra, "", 1)
    # e.g. extra["chance_loss"] or extra["choice_loss"]["chance_loss"] (what sft writes)
    nested = [(k, v) for d in extra.values() if isinstance(d, dict) for k, v in d.items()]
    chance = {k: float(v) for k, v in [*extra.items(), *nested] if _num(v) and "chance" in k.lower()}
    for curve in out:
        if curve.name not in declared and any("loss" in s.lower() for s in [curve.name, *curve.series]):
            # A line the curve already declares at that height keeps its own label: two labels on
            # one line overprint each other.
            extra_lines = {k: v for k, v in chance.items()
                           if not any(abs(v - w) < 1e-6 for w in curve.hlines.values())}
            curve.hlines = {**extra_lines, **curve.hlines}
    return out[:MAX_CURVES]


def stage_curves(r: StageResult) -> list[Curve]:
    """A stage's curves: its typed ones (`StageResult.curves`, which carry their kind), and the
    curves guessed from older `extra` shapes beside them."""
    typed = {c.name: c for c in r.curves}
    out = []
    for guessed in curves_of(r.extra.to_dict()):
        c = typed.pop(guessed.name, None)
        if c is not None:  # the typed curve, with the chance lines the guess found
            c.hlines = {**guessed.hlines, **c.hlines}
            guessed = c
        out.append(guessed)
    out = (out + list(typed.values()))[:MAX_CURVES]
    # A line the stage labelled itself (sft: "chance −log(1/3)") keeps that label on every curve
    # it is found on, not a key name ("chance_loss") on some of them.
    declared = {round(v, 6): k for c in r.curves for k, v in c.hlines.items()}
    for c in out:
        relabelled: dict[str, float] = {}
        for k, v in c.hlines.items():
            relabelled.setdefault(declared.get(round(v, 6), k), v)
        c.hlines = relabelled
    return out


def _guess(name: str, value: Any) -> Curve | None:
    if isinstance(value, list):
        short = name.rsplit(".", 1)[-1]
        if _numbers(value):  # a lone list of steps or Ns is an axis, not a curve
            return None if short in X_KEYS else Curve(name=name, x=list(range(len(value))), series={short: value},
                                                      xlabel="index")
        if len(value) >= 2 and all(isinstance(p, list) and len(p) == 2 and all(map(_num, p)) for p in value):
            return Curve(name=name, x=[p[0] for p in value], series={short: [p[1] for p in value]},  # [[step, loss]]
                         xlabel="step")
        return _from_points(name, value)
    if isinstance(value, dict):
        if "x" in value and "y" in value:
            return _from_spec(name, value)
        return _from_columns(name, value)
    return None


def _panel(series: str) -> str:
    s = series.lower()
    return "loss" if "loss" in s else "kl" if "kl" in s else "value"


def ema(values: list[float | None], alpha: float = EMA_ALPHA) -> list[float | None]:
    """Exponential moving average, started at the first value; a missing point keeps the average."""
    out: list[float | None] = []
    avg = None
    for v in values:
        if _num(v):
            avg = v if avg is None else alpha * v + (1 - alpha) * avg
        out.append(avg if _num(v) else None)
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (_num(x) and _num(y) and abs(x - y) < 1e-9)
                                    for x, y in zip(a, b))


def coinciding(series: dict[str, list]) -> dict[str, list]:
    """Series equal point for point drawn once, under a name that says so ("a = b (coincide)")."""
    groups: list[list[str]] = []
    for name, ys in series.items():
        group = next((g for g in groups if _same(series[g[0]], ys)), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return {(" = ".join(g) + " (coincide)" if len(g) > 1 else g[0]): series[g[0]] for g in groups}


def _starts_at_zero(curve: Curve, panel: str, names: list[str]) -> bool:
    """Counts (tokens, lengths) and KL are ≥ 0 by nature: an axis from 0 shows their size."""
    words = " ".join([curve.ylabel, *names]).lower()
    return panel == "kl" or any(w in words for w in ("token", "length", "count"))


def curve_figure(stage: str, curve: Curve):
    """One figure per curve; series of different kinds (loss, kl, other) get side-by-side panels."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    series_all = dict(curve.series)
    # best-of-k points carry their sample size: the same number at every k, a note, not a line.
    sizes = series_all.pop("n", None) if curve.kind == "n" and len(curve.series) > 1 else None
    size = f" (n = {sizes[0]:g} per point)" if sizes and _num(sizes[0]) and len(set(sizes)) == 1 else ""
    if sizes and not size:
        series_all["n"] = sizes
    groups: dict[str, dict[str, list]] = {}
    for s, ys in series_all.items():
        groups.setdefault(_panel(s), {})[s] = ys
    panels = list(groups)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels if len(panels) > 1 else None)
    xs = [v for v in curve.x if _num(v)]
    # An axis over N is logarithmic (N = 1, 2, 4, 8 … as the README says), whatever its span;
    # training steps are always linear.
    log_x = curve.kind == "n" and bool(xs) and min(xs) > 0 and max(xs) > min(xs)
    colour = 0
    for col, panel in enumerate(panels, start=1):
        series = coinciding(groups[panel])
        for s, ys in series.items():
            c = PALETTE[colour % len(PALETTE)]
            colour += 1
            smooth = curve.kind == "step" and "reward" in s.lower() and sum(map(_num, ys)) >= EMA_MIN_POINTS
            if smooth:  # the raw reward is noisy: faint, under its moving average
                fig.add_trace(go.Scatter(x=curve.x, y=ys, mode="lines", name=f"{s} (raw)", opacity=0.3,
                                         line=dict(color=c, width=1)), row=1, col=col)
                fig.add_trace(go.Scatter(x=curve.x, y=ema(ys), mode="lines", name=f"{s}, EMA α={EMA_ALPHA:g}",
                                         line=dict(color=c, width=2.5)), row=1, col=col)
            else:
                fig.add_trace(go.Scatter(x=curve.x, y=ys, mode="lines+markers", name=s, line=dict(color=c)),
                              row=1, col=col)
        if panel == "loss" or len(panels) == 1:
            # Labels alternate sides so that two lines at nearly one height do not overprint.
            for i, (label, y) in enumerate(sorted(curve.hlines.items(), key=lambda kv: kv[1])):
                fig.add_hline(y=y, line_dash="dash", line_color="firebrick", annotation_text=html.escape(label),
                              annotation_position="top left" if i % 2 == 0 else "bottom right", row=1, col=col)
        # On a log axis plotly labels minor ticks too (2, 3, … 9 per decade); label only the x values.
        ticks = dict(tickvals=xs, ticktext=[f"{v:g}" for v in xs]) if log_x and len(xs) <= 16 else {}
        fig.update_xaxes(title_text=curve.xlabel, type="log" if log_x else "linear", row=1, col=col, **ticks)
        if _starts_at_zero(curve, panel, list(series)):
            fig.update_yaxes(rangemode="tozero", row=1, col=col)
    if len(panels) == 1 and curve.ylabel:
        fig.update_yaxes(title_text=curve.ylabel)
    fig.update_layout(title=f"{stage}: {curve.name}{size}", template="plotly_white", height=360,
                      margin=dict(l=50, r=20, t=60, b=40), meta={"curve_kind": curve.kind})
    return fig


PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
