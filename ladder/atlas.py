"""Sample atlas: the samples of every stage as points on a 2-D map, in one offline HTML page.

    samples.jsonl (each stage in summary.csv) → embedding → UMAP → plotly scatter + filter panel

Balanced by default: one point per test example and stage, the sample the stage kept (best_of_n:
the `selected` one), so a stage that draws N samples per example does not fill the map with its
own points; `--all-samples` plots every sample. A point is placed by its completion (`--text`:
completion, prompt, or both — completion with its prompt beside it at half weight). Identical
texts share one spot, spread into a small disc whose area grows with their count.

Points are coloured by score (by stage or gold label on request), and each stage keeps its marker
shape. The panel beside the map filters by stage, correct / not correct and "stages disagree"
(examples whose stages scored differently); a click pins a sample's full prompt, completion,
score, stage and finish reason, with what the other stages answered (ladder/atlas_page.py).

Embedders (`--embed`):
  tfidf          default, no model: TF-IDF over words and word pairs, TruncatedSVD to 64 dims.
                 About a second for 10,000 samples.
  hf[:MODEL]     mean-pooled last hidden states of a local causal LM through the hf backend
                 (default: the experiment's own model). Semantic, slower.
  openai:MODEL   an OpenAI-compatible embeddings endpoint (OPENAI_API_KEY, OPENAI_BASE_URL), e.g.
                 openai:text-embedding-3-small, or a vLLM/TEI server's model.
atlas.html is self-contained (plotly.js inlined once), so it opens offline and can be mailed
around; inside report.html the atlas reuses the report's copy of plotly.js.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Sequence

from ladder.atlas_page import Point
from ladder.evidence import load_results
from ladder.errors import LadderError
from ladder.progress import progress_bar
from ladder.store import atomic_write, read_jsonl
from ladder.types import Record

TextMode = Literal["both", "completion", "prompt"]
TEXT_MODES = ("completion", "prompt", "both")
BRUTE_KNN = 50_000
"""Up to this many points, exact neighbours by brute force (see `reduce`)."""
PROMPT_WEIGHT = 0.5
"""Weight of the prompt beside the completion in `--text both` (distances: a quarter as much)."""


def load_points(folder: Path, stages: Sequence[str] | None = None, *, all_samples: bool = False) -> list[Point]:
    """One point per example and stage of the experiment's table (or just `stages`): the sample the
    stage kept, else its first. With `all_samples`, every sample."""
    from ladder.errors import NothingMeasured
    from ladder.variants_folder import combined_info, flat_evidence

    if combined_info(folder):  # a variants experiment: every variant's stages, labelled <variant>/<stage>
        ev = flat_evidence(folder)
        results, base = ev.results, ev.folder
    else:
        results, base = load_results(folder), folder
    if not results:
        raise NothingMeasured("no finished stages here", where=str(folder),
                              fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    points = []
    for r in results:
        # --stage zero_shot takes every variant's zero_shot; --stage a/zero_shot one variant's.
        if stages and r.stage not in stages and r.stage.split("/", 1)[-1] not in stages:
            continue
        latest: dict[str, Record] = {}
        for rec in map(Record.from_dict, read_jsonl(base / r.stage / r.run_id / "samples.jsonl")):
            old = latest.get(rec.id)
            if old is None or old.error or not rec.error:  # a retry's success wins
                latest[rec.id] = rec
        for rec in latest.values():
            if not rec.samples:
                continue
            prompt = rec.user_prompt()
            kept = rec.selected if isinstance(rec.selected, int) and 0 <= rec.selected < len(rec.samples) else 0
            example_score = None if rec.score is None else float(rec.score)
            for i, s in enumerate(rec.samples):
                if not all_samples and i != kept:
                    continue
                score = s.get("score", rec.score if len(rec.samples) == 1 else None)
                points.append(Point(r.stage, str(rec.id), i, prompt, s.get("text", ""),
                                    None if score is None else float(score),
                                    "" if rec.target is None else str(rec.target), s.get("finish_reason", ""),
                                    kept=i == kept, samples=len(rec.samples), example_score=example_score))
    if not points and not stages:
        raise NothingMeasured("no stage recorded a sample", where=str(folder),
                              fix="re-run the experiment (`ladder run`): stages whose requests all failed are retried")
    if not points:
        raise LadderError("the selected stages have no samples", where=str(folder),
                          fix="check --stage names against the table (`ladder compare`)")
    return points


def keys(points: Sequence[Point], text: TextMode) -> list[tuple[str, ...]]:
    """What places each point: equal keys get one spot on the map."""
    if text == "prompt":
        return [(p.prompt,) for p in points]
    if text == "completion":
        return [(p.completion,) for p in points]
    return [(p.completion, p.prompt) for p in points]


def place(points: Sequence[Point], how: str = "tfidf", text: TextMode = "completion", *,
          default_model: str | None = None, seed: int = 0):
    """Each point's spot on the 2-D map, an (n, 2) array. Each distinct text is embedded and
    mapped once, so identical texts share a spot exactly (the page spreads them into a disc);
    UMAP on many exact duplicates would instead scatter them at random over a blob."""
    import numpy as np

    ks = keys(points, text)
    first: dict[tuple[str, ...], int] = {}
    for i, k in enumerate(ks):
        first.setdefault(k, i)
    distinct = [points[i] for i in first.values()]
    xy = distinct_spots(reduce(vectors(distinct, how, text, default_model=default_model, seed=seed,
                                       samples=len(points)), seed))
    row = {k: j for j, k in enumerate(first)}
    return np.asarray(xy, dtype=float)[[row[k] for k in ks]]


def vectors(points: Sequence[Point], how: str, text: TextMode, *, default_model: str | None = None,
            seed: int = 0, samples: int | None = None):
    """One row per point. `both` puts the completion embedding beside the prompt's at half
    weight: points cluster by what was written, and spread within a cluster by what was asked
    (plain concatenated text lets the longer prompt decide, so samples just clump by example)."""
    import numpy as np

    kw = dict(default_model=default_model, seed=seed, samples=samples or len(points))
    if text == "prompt":
        return embed([p.prompt for p in points], how, **kw)
    completions = embed([p.completion for p in points], how, **kw)
    if text == "completion":
        return completions
    return np.hstack([completions, PROMPT_WEIGHT * embed([p.prompt for p in points], how, **kw)])


# ---------------------------------------------------------------------------------------------
# Embedding


def embed(texts: list[str], how: str = "tfidf", *, default_model: str | None = None, seed: int = 0,
          samples: int | None = None):
    """An (n, d) float array, one row per text, L2-normalised (so euclidean distance ranks like cosine).
    `samples`: how many samples these texts stand for (place() passes only distinct ones), for the
    progress line."""
    import numpy as np

    # Prompts repeat across stages and samples: embed each distinct text once.
    samples = samples or len(texts)  # what the progress line counts: the samples, not their distinct texts
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    texts, back = unique, [where[t] for t in texts]
    kind, _, model = how.partition(":")
    if kind == "tfidf":
        with progress_bar(f"atlas: TF-IDF embedding of {samples:,} samples ({len(texts):,} distinct texts)",
                          total=1) as advance:
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
    # Few texts or few words: keep every dimension. Truncating below the rank would merge texts
    # (three one-word answers need three dimensions; an SVD to two stacks two of them).
    if x.shape[0] <= 64 or x.shape[1] <= 64:
        return x.toarray()
    return TruncatedSVD(64, random_state=seed).fit_transform(x).astype(np.float32)


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


def distinct_spots(xy, *, eps: float = 1e-6):
    """`xy` (one row per distinct text) with no two rows on one spot. A 2-D projection can map two
    different texts to the same point (three one-word answers are three orthogonal vectors; any
    two-dimensional view of them may stack two), and the page would then draw them as one disc
    under no label. Rows closer than `eps` of the map's span are set around their shared spot on a
    small circle; the page's layout then pushes the discs apart."""
    import numpy as np

    xy = np.array(xy, dtype=float)
    if len(xy) < 2:
        return xy
    span = float(np.max(xy.max(axis=0) - xy.min(axis=0)))
    scale = span if span > 0 else 1.0
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(xy / (eps * scale)):
        cells.setdefault((round(x), round(y)), []).append(i)
    for members in cells.values():
        if len(members) > 1:
            centre = xy[members].mean(axis=0)
            for j, i in enumerate(members):
                angle = 2 * np.pi * j / len(members)
                xy[i] = centre + 0.05 * scale * np.array([np.cos(angle), np.sin(angle)])
    return xy


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
# The command


def build(folder: Path, *, how: str = "tfidf", text: TextMode = "completion",
          stages: Sequence[str] | None = None, all_samples: bool = False, seed: int = 0):
    """(points, their map spots, a title) of an experiment folder, for `ladder atlas` and the report."""
    import yaml

    if text not in TEXT_MODES:
        raise LadderError(f"--text {text} is not one of {', '.join(TEXT_MODES)}", field="--text",
                          fix="write --text completion (default), --text prompt or --text both")
    points = load_points(folder, stages, all_samples=all_samples)
    config = folder / "experiment.yaml"
    if not config.exists() and points and "/" in points[0].stage:  # a variants folder: the first variant's
        config = folder / "variants" / points[0].stage.split("/", 1)[0] / "experiment.yaml"
    model = (yaml.safe_load(config.read_text()) or {}).get("model", {}) if config.exists() else {}
    default_model = model.get("name") if model.get("backend", "hf") == "hf" else None
    xy = place(points, how, text, default_model=default_model, seed=seed)
    what = {"both": "completion (+ prompt at half weight)", "completion": "completion", "prompt": "prompt"}[text]
    distinct = len(set(keys(points, text)))
    which = "every sample" if all_samples else "one per example and stage"
    title = (f"{folder.name}: {len(points):,} points ({which}) · {distinct:,} distinct {what} texts · "
             f"{how} embedding · {'UMAP' if distinct >= 16 else 'PCA'} to 2-D")
    return points, xy, title


def fragment(folder: Path, **kwargs) -> str:
    """The atlas as an HTML fragment for a page that already loads plotly.js (the report)."""
    from ladder.atlas_page import fragment as html_fragment

    return html_fragment(*build(folder, **kwargs))


def write(folder: Path, out: Path | None = None, **kwargs) -> Path:
    """atlas.html: the fragment in a page of its own, with plotly.js inlined once."""
    from ladder.atlas_page import page

    body = page(*build(folder, **kwargs))
    out = out or folder / "atlas.html"
    with progress_bar("atlas: writing the page", total=1) as advance:
        atomic_write(out, body)
        advance(1)
    return out
