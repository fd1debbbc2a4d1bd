"""Sample atlas: every sample of every stage as one point on a 2-D map, in one offline HTML file.

    samples.jsonl (each stage in summary.csv) → embedding → UMAP → plotly scatter

By default a point is placed by its completion, with its prompt beside it at half weight: points
cluster by what was written and spread within a cluster by what was asked (`--text`).

Reading numbers alone hides *what* the model writes; the atlas shows it: clusters of similar
completions, which stage writes them, whether they score. Hover a point for its prompt excerpt,
completion, score, stage and finish reason; buttons recolour by stage, score or gold label.

Embedders (`--embed`):
  tfidf          default, no model: TF-IDF over words and word pairs, TruncatedSVD to 64 dims.
                 About a second for 10,000 samples.
  hf[:MODEL]     mean-pooled last hidden states of a local causal LM through the hf backend
                 (default: the experiment's own model). Semantic, slower.
  openai:MODEL   an OpenAI-compatible embeddings endpoint (OPENAI_API_KEY, OPENAI_BASE_URL), e.g.
                 openai:text-embedding-3-small, or a vLLM/TEI server's model.
The file is self-contained (plotly.js inlined), so it opens offline and can be mailed around.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from ladder.evidence import load_results
from ladder.errors import LadderError
from ladder.progress import progress_bar
from ladder.store import atomic_write, read_jsonl
from ladder.types import Record

TextMode = Literal["both", "completion", "prompt"]
WEBGL_ABOVE = 20_000
"""Points beyond which the scatter is drawn with WebGL: SVG stays smooth up to about this many,
and needs no GPU (headless browsers and some remote desktops have none)."""
BRUTE_KNN = 50_000
"""Up to this many points, exact neighbours by brute force (see `reduce`)."""
PROMPT_WEIGHT = 0.5
"""Weight of the prompt beside the completion in `--text both` (distances: a quarter as much)."""
SYMBOLS = ["circle", "diamond", "square", "triangle-up", "cross", "x", "star", "pentagon", "hexagon"]
"""Each stage keeps its marker shape in every colouring, so coloured by score it is still told apart."""
MAX_LABELS = 12
"""Label colours are for K-way tasks; free-form targets beyond this many share one 'other' colour."""


@dataclass(frozen=True)
class Point:
    stage: str
    example: str
    index: int
    """Sample number within its example (best_of_n has many)."""
    prompt: str
    """The last user turn: what was asked, without instruction and shots."""
    completion: str
    score: float | None
    label: str
    finish: str


def load_points(folder: Path, stages: Sequence[str] | None = None) -> list[Point]:
    """Every sample of every stage in the experiment's table (or just `stages`)."""
    results = load_results(folder)
    if not results:
        raise LadderError("no finished stages here", where=str(folder),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    points = []
    for r in results:
        if stages and r.stage not in stages:
            continue
        latest: dict[str, Record] = {}
        for rec in map(Record.from_dict, read_jsonl(folder / r.stage / r.run_id / "samples.jsonl")):
            old = latest.get(rec.id)
            if old is None or old.error or not rec.error:  # a retry's success wins
                latest[rec.id] = rec
        for rec in latest.values():
            prompt = rec.user_prompt()
            for i, s in enumerate(rec.samples):
                score = s.get("score", rec.score)
                points.append(Point(r.stage, str(rec.id), i, prompt, s.get("text", ""),
                                    None if score is None else float(score),
                                    "" if rec.target is None else str(rec.target), s.get("finish_reason", "")))
    if not points:
        raise LadderError("the selected stages have no samples", where=str(folder),
                          fix="check --stage names against the table (`ladder compare`)")
    return points


def vectors(points: Sequence[Point], how: str, text: TextMode, *, default_model: str | None = None,
            seed: int = 0):
    """One row per point. `both` puts the completion embedding beside the prompt's at half
    weight: points cluster by what was written, and spread within a cluster by what was asked
    (plain concatenated text lets the longer prompt decide, so samples just clump by example)."""
    import numpy as np

    kw = dict(default_model=default_model, seed=seed)
    if text == "prompt":
        return embed([p.prompt for p in points], how, **kw)
    completions = embed([p.completion for p in points], how, **kw)
    if text == "completion":
        return completions
    return np.hstack([completions, PROMPT_WEIGHT * embed([p.prompt for p in points], how, **kw)])


# ---------------------------------------------------------------------------------------------
# Embedding


def embed(texts: list[str], how: str = "tfidf", *, default_model: str | None = None, seed: int = 0):
    """An (n, d) float array, one row per text, L2-normalised (so euclidean distance ranks like cosine)."""
    import numpy as np

    # Prompts repeat across stages and samples: embed each distinct text once.
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    texts, back = unique, [where[t] for t in texts]
    kind, _, model = how.partition(":")
    if kind == "tfidf":
        with progress_bar(f"atlas: TF-IDF embedding of {len(texts):,} samples", total=1) as advance:
            x = _tfidf(texts, seed)
            advance(1)
    elif kind == "hf":
        x = _hf(texts, model or default_model or "ladder-tiny")
    elif kind == "openai":
        if not model:
            raise LadderError("openai embeddings need a model", field="--embed",
                              fix="write e.g. --embed openai:text-embedding-3-small")
        x = _openai(texts, model)
    else:
        raise LadderError(f"unknown embedder '{how}'", field="--embed",
                          fix="use tfidf, hf, hf:MODEL or openai:MODEL")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms))[back]


def _tfidf(texts: list[str], seed: int):
    import numpy as np
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Single characters count as words: answers like "A" or "7" are what tells samples apart.
    vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", sublinear_tf=True,
                          max_features=50_000, dtype=np.float32)
    try:
        x = vec.fit_transform(texts)
    except ValueError:  # every text empty: nothing to tell apart
        return np.zeros((len(texts), 2), dtype=np.float32)
    k = min(64, x.shape[1] - 1, x.shape[0] - 1)
    if k < 2:
        return x.toarray()
    return TruncatedSVD(k, random_state=seed).fit_transform(x).astype(np.float32)


def _hf(texts: list[str], name: str, batch: int = 32):
    import numpy as np
    import torch

    from ladder.backends.hf import HFBackend, HFConfig

    backend = HFBackend(HFConfig(name=name))
    tok, model = backend.tokenizer, backend.model
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    limit = min(getattr(tok, "model_max_length", 512) or 512, 512)
    # Sorted by length, a batch pads little; rows go back to input order at the end.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad(), progress_bar(f"atlas: embedding with {name}", total=len(texts)) as advance:
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            enc = tok([texts[i] or " " for i in idx], return_tensors="pt", padding=True, truncation=True,
                      max_length=limit).to(model.device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = pooled.float().cpu().numpy()
            advance(len(idx))
    backend.close()
    return out


def _openai(texts: list[str], model: str, batch: int = 256):
    import numpy as np
    import openai

    try:
        client = openai.OpenAI(max_retries=3)
    except openai.OpenAIError as exc:
        raise LadderError(f"cannot make an OpenAI client ({exc})", field="--embed",
                          fix="set OPENAI_API_KEY (and OPENAI_BASE_URL for another server)") from None
    rows: list[list[float]] = []
    with progress_bar(f"atlas: embedding with {model}", total=len(texts)) as advance:
        for start in range(0, len(texts), batch):
            chunk = [t or " " for t in texts[start:start + batch]]  # the API rejects empty strings
            try:
                resp = client.embeddings.create(model=model, input=chunk, encoding_format="float")
            except openai.APIError as exc:
                raise LadderError(f"the embeddings request failed ({exc})", field="--embed") from None
            rows += [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
            advance(len(chunk))
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# 2-D map


def reduce(x, seed: int = 0, neighbours: int = 15):
    """UMAP to 2-D. Below 16 points UMAP's neighbourhood graph is meaningless; use the top two
    principal components instead."""
    import numpy as np

    n = x.shape[0]
    if n < 16:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.zeros((n, 2))
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    import umap

    k = min(neighbours, n - 1)
    with progress_bar(f"atlas: UMAP of {n:,} points", total=1) as advance, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(n_jobs|disconnected|fully connected|random_state|"
                                                  "precomputed_knn|search index).*")
        # Exact neighbours by brute force (a second for 10k points) rather than umap's own
        # NN-descent, whose numba compilation costs ~35 s in every new process; past BRUTE_KNN
        # points NN-descent's speed wins and pays for it.
        knn = _knn(x, k) if n <= BRUTE_KNN else (None, None, None)
        # PCA initialisation: the default spectral one takes ~40 s on 10k samples full of
        # near-duplicates (a graph of many small components); PCA takes well under a second.
        # Seeded for reproducible maps, which costs umap the parallelism 2 cores barely have.
        xy = umap.UMAP(n_neighbors=k, min_dist=0.1, init="pca", n_epochs=200, random_state=seed,
                       precomputed_knn=knn).fit_transform(x)
        advance(1)
    return xy


def _knn(x, k: int):
    """umap's (indices, distances, search index) with each point its own first neighbour."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k - 1, algorithm="brute").fit(x).kneighbors()
    own = np.arange(len(x))[:, None]
    return np.hstack([own, idx]), np.hstack([np.zeros_like(own, dtype=dist.dtype), dist]).astype(np.float32), None


# ---------------------------------------------------------------------------------------------
# Figure


def figure(points: Sequence[Point], xy, title: str):
    """The scatter: one trace per stage, plus buttons that recolour by stage, score or label."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Plotly + qualitative.D3
    stages = list(dict.fromkeys(p.stage for p in points))
    labels = [label for label, _ in _top(p.label for p in points)]
    label_color = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    scores = [p.score for p in points if p.score is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    scatter = go.Scattergl if len(points) > WEBGL_ABOVE else go.Scatter
    # Identical samples (the same answer to the same prompt in two stages) land on one spot; a
    # jitter of half a percent of the map shows there are several without moving clusters.
    rng = np.random.default_rng(0)
    xy = xy + rng.normal(0, 0.005, xy.shape) * (xy.max(axis=0) - xy.min(axis=0) + 1e-9)
    fig = go.Figure()
    by_stage: dict[str, list[int]] = {s: [] for s in stages}
    for i, p in enumerate(points):
        by_stage[p.stage].append(i)
    colours: dict[str, list[Any]] = {"stage": [], "score": [], "label": []}
    for k, stage in enumerate(stages):
        idx = by_stage[stage]
        fig.add_trace(scatter(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=stage, legendgroup="stages",
            hovertext=[hover(points[i]) for i in idx], hoverinfo="text",
            marker=dict(size=6, opacity=0.75, color=palette[k % len(palette)], line=dict(width=0),
                        symbol=SYMBOLS[k % len(SYMBOLS)])))
        colours["stage"].append(palette[k % len(palette)])
        colours["score"].append([points[i].score if points[i].score is not None else math.nan for i in idx])
        colours["label"].append([label_color.get(points[i].label, "#999999") for i in idx])
    # Empty traces carry the label legend, shown only while colouring by label.
    for label in labels:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"label: {label}", visible=False,
                                 marker=dict(size=8, color=label_color[label]), legendgroup="labels"))
    n_stage, n_label = len(stages), len(labels)

    def mode(name: str) -> dict[str, Any]:
        return dict(label=f"colour: {name}", method="restyle", args=[{
            "marker.color": colours[name] + [label_color[lb] for lb in labels],
            "marker.colorscale": ["Viridis"] * (n_stage + n_label),
            "marker.cmin": [lo] * (n_stage + n_label), "marker.cmax": [hi] * (n_stage + n_label),
            # One colour bar (on the first trace) explains the score colours.
            "marker.showscale": [name == "score" and k == 0 for k in range(n_stage)] + [False] * n_label,
            "visible": [True] * n_stage + [name == "label"] * n_label,
        }])

    fig.update_layout(
        title=dict(text=title, x=0.01, y=0.98, yanchor="top"), template="plotly_white", height=720,
        hovermode="closest", xaxis=dict(showticklabels=False, title=None, zeroline=False),
        yaxis=dict(showticklabels=False, title=None, zeroline=False),
        # The legend goes below the map, leaving the right edge to the score colour bar.
        legend=dict(itemsizing="constant", orientation="h", x=0, y=-0.02, yanchor="top"),
        margin=dict(l=20, r=20, t=100, b=20),
        updatemenus=[dict(type="buttons", direction="right", x=0, xanchor="left", y=1.02, yanchor="bottom",
                          buttons=[mode("stage"), mode("score"), mode("label")])])
    return fig


def _top(values) -> list[tuple[str, int]]:
    from collections import Counter

    return Counter(values).most_common(MAX_LABELS)


def hover(p: Point) -> str:
    score = "n/a" if p.score is None else f"{p.score:.3g}"
    return (f"<b>{_esc(p.stage)}</b> · score {score} · {_esc(p.finish)} · example {_esc(p.example)}"
            f"{f' #{p.index}' if p.index else ''}<br><b>prompt</b> {_wrap(p.prompt, 200)}"
            f"<br><b>completion</b> {_wrap(p.completion, 400)}<br><b>label</b> {_esc(p.label)}")


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _wrap(text: str, limit: int, width: int = 90) -> str:
    """Cut to `limit` characters and break lines for the hover box (plotly does not wrap)."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return "<br>".join(_esc(text[i:i + width]) for i in range(0, len(text), width)) or "<i>(empty)</i>"


# ---------------------------------------------------------------------------------------------
# The command


def build(folder: Path, *, how: str = "tfidf", text: TextMode = "both", stages: Sequence[str] | None = None,
          seed: int = 0):
    """The atlas figure of an experiment folder (for `ladder atlas` and the report)."""
    import yaml

    points = load_points(folder, stages)
    config = folder / "experiment.yaml"
    model = (yaml.safe_load(config.read_text()) or {}).get("model", {}) if config.exists() else {}
    default_model = model.get("name") if model.get("backend", "hf") == "hf" else None
    xy = reduce(vectors(points, how, text, default_model=default_model, seed=seed), seed)
    what = {"both": "completion (+ prompt at half weight)", "completion": "completion", "prompt": "prompt"}[text]
    title = (f"{folder.name}: {len(points):,} samples · {how} embedding of each {what} · "
             f"{'UMAP' if len(points) >= 16 else 'PCA'} to 2-D")
    return figure(points, xy, title)


def write(folder: Path, out: Path | None = None, **kwargs) -> Path:
    fig = build(folder, **kwargs)
    out = out or folder / "atlas.html"
    with progress_bar("atlas: writing the page", total=1) as advance:
        atomic_write(out, fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False}))
        advance(1)
    return out
