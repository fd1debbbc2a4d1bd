"""The sample atlas: points from samples.jsonl, embedders, the 2-D map, the figure, the page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from ladder import atlas, atlas_page
from ladder.atlas import Point
from ladder.config import load_experiment
from ladder.errors import LadderError
from ladder.runner import run_experiment
from tests.conftest import REPO, experiment
from tests.test_climb import ORACLE

pytest.importorskip("umap", reason="pip install umap-learn (a dependency of ladder)")


@pytest.fixture
def finished(tmp_path):
    stages = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2}, {"type": "best_of_n", "n": 3, "scorer": "metric"}]
    exp = load_experiment(experiment(tmp_path, "unused", stages=stages, model=ORACLE))
    run_experiment(exp)
    return exp.results_path


def test_one_point_per_example_and_stage_by_default(finished):
    points = atlas.load_points(finished)
    assert len(points) == 3 * 40 and {p.stage for p in points} == {"zero_shot", "few_shot", "best_of_n"}
    assert len({(p.stage, p.example) for p in points}) == len(points)  # balanced: no stage has more
    p = next(p for p in points if p.stage == "few_shot")
    assert p.prompt.startswith("Review: the meal") and p.completion == p.label and p.score == 1.0
    assert p.finish == "eos" and p.kept and p.samples == 1
    bon = [p for p in points if p.stage == "best_of_n"]
    assert all(p.samples == 3 and p.kept for p in bon)
    # best_of_n's point is the sample the record says it selected.
    records = {r["id"]: r for r in _records(finished, "best_of_n")}
    assert all(p.index == records[p.example]["selected"] for p in bon)
    assert len(atlas.load_points(finished, ["few_shot"])) == 40
    with pytest.raises(LadderError, match="no finished stages"):
        atlas.load_points(finished / "nowhere")


def test_all_samples_plots_every_sample(finished):
    points = atlas.load_points(finished, all_samples=True)
    assert len(points) == 40 + 40 + 3 * 40
    bon = [p for p in points if p.stage == "best_of_n"]
    assert sorted(p.index for p in bon if p.example == bon[0].example) == [0, 1, 2]
    assert sum(p.kept for p in bon) == 40  # one selected sample per example


def test_unknown_text_mode_is_refused_before_reading_anything(tmp_path):
    with pytest.raises(LadderError, match="--text") as err:
        atlas.build(tmp_path, text="words")
    assert "completion" in err.value.render() and not list(tmp_path.iterdir())


def _records(folder, stage):
    from ladder.store import read_jsonl

    (run,) = [d for d in (folder / stage).iterdir() if (d / "samples.jsonl").exists()]
    return read_jsonl(run / "samples.jsonl")


def test_tfidf_embedding_embeds_each_distinct_text_once():
    texts = ["the soup was cold", "great soup", "the soup was cold", "A", "B", ""]
    x = atlas.embed(texts)
    assert x.shape[0] == 6 and np.allclose(x[0], x[2]) and not np.allclose(x[0], x[1])
    assert not np.allclose(x[3], x[4])  # one-character answers still count as words
    assert np.allclose(np.linalg.norm(x[:5], axis=1), 1, atol=1e-5)
    assert atlas.embed(["", ""]).shape[0] == 2  # nothing to tell apart: no crash


def test_both_puts_the_completion_first():
    # Points 2k and 2k+1 share a prompt (six words of their own) and differ in the one-word answer.
    pts = [Point("s", str(i), 0, " ".join(f"w{i // 2}x{j}" for j in range(6)), ["positive", "negative"][i % 2],
                 1.0, "x", "eos") for i in range(20)]
    x = atlas.vectors(pts, "tfidf", "both")
    d = lambda i, j: np.linalg.norm(x[i] - x[j])  # noqa: E731
    assert d(0, 2) < d(0, 1)  # same answer to another prompt is closer than another answer to the same prompt
    joined = atlas.vectors(pts, "tfidf", "prompt")
    assert np.allclose(joined[0], joined[1])


def test_reduce_small_and_umap_paths():
    rng = np.random.default_rng(0)
    small = atlas.reduce(rng.normal(size=(5, 8)))
    assert small.shape == (5, 2) and np.isfinite(small).all()
    blobs = np.vstack([rng.normal(0, 0.1, (30, 8)), rng.normal(5, 0.1, (30, 8))])
    xy = atlas.reduce(blobs)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    a, b = xy[:30].mean(axis=0), xy[30:].mean(axis=0)
    spread = max(xy[:30].std(axis=0).max(), xy[30:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread  # the two blobs stay apart


def _pts(n_examples=20, stages=("zero_shot", "few_shot")):
    """Each example: its own six-word prompt; stage k answers example i with one of three words."""
    words = ["positive", "negative", "neutral"]
    return [Point(stage, str(i), 0, " ".join(f"w{i}x{j}" for j in range(6)), words[(i + k) % 3],
                  float((i + k) % 3 == 0), words[i % 3], "eos", example_score=float((i + k) % 3 == 0))
            for k, stage in enumerate(stages) for i in range(n_examples)]


def test_text_mode_decides_what_shares_a_spot():
    pts = _pts()
    by_prompt = atlas.place(pts, "tfidf", "prompt")
    same_example = [(i, i + 20) for i in range(20)]  # zero_shot's and few_shot's point of one example
    assert all(np.allclose(by_prompt[i], by_prompt[j]) for i, j in same_example)
    assert len({tuple(np.round(r, 6)) for r in by_prompt}) == 20
    by_completion = atlas.place(pts, "tfidf", "completion")
    assert not any(np.allclose(by_completion[i], by_completion[j]) for i, j in same_example)  # answers differ
    assert len({tuple(np.round(r, 6)) for r in by_completion}) == 3  # one spot per distinct answer
    same_answer = [(i, j) for i in range(40) for j in range(40) if pts[i].completion == pts[j].completion]
    assert all(np.allclose(by_completion[i], by_completion[j]) for i, j in same_answer)
    both = atlas.place(pts, "tfidf", "both")
    assert len({tuple(np.round(r, 6)) for r in both}) == 40


def test_every_distinct_answer_gets_its_own_labelled_spot():
    # The quickstart's three answers, in its proportions (1,800 points over 6 stages): a 2-D view
    # of three one-word TF-IDF vectors once stacked "positive" and "neutral" into one unlabelled
    # disc, hiding the main error (neutral answered as positive).
    counts = {"positive": 1003, "negative": 497, "neutral": 300}
    pts = [Point("zero_shot", f"{word}{i}", 0, f"review {word} {i}", word, 1.0, word, "eos")
           for word, n in counts.items() for i in range(n)]
    xy = atlas.place(pts, "tfidf", "completion")
    assert len({tuple(r) for r in xy}) == 3  # three spots, one per answer
    _, labels = atlas_page.layout(pts, xy)
    assert sorted(label["text"] for label in labels) == sorted(f"“{w}” · {n:,}" for w, n in counts.items())


def test_distinct_spots_separates_stacked_rows_and_keeps_the_rest():
    xy = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1e-9]])
    out = atlas.distinct_spots(xy)
    assert len({tuple(r) for r in out}) == 4 and np.allclose(out[2], [1.0, 1.0])
    assert len({tuple(r) for r in atlas.distinct_spots(np.zeros((5, 2)))}) == 5  # all on one spot


def test_identical_spots_spread_into_a_disc_best_scores_inside():
    from ladder.atlas_page import spread

    pts = _pts()
    xy = np.array([[0.0, 0.0]] * 30 + [[10.0, 10.0]] * 10)
    out = spread(pts, xy)
    assert len({tuple(r) for r in out}) == 40  # no two points on one spot
    assert np.allclose(out[30:].mean(axis=0), [10, 10], atol=0.5) and np.abs(out[:30]).max() < 1
    r = np.linalg.norm(out[:30], axis=1)
    right = [i for i in range(30) if pts[i].score == 1.0]
    wrong = [i for i in range(30) if pts[i].score == 0.0]
    assert r[right].max() <= r[wrong].min()  # a disc reads as a share of right and wrong


def test_data_flags_correct_and_disagreeing_examples():
    from ladder.atlas_page import correct, data, disagreeing

    pts = _pts(6) + [Point("rl", "9", 0, "q", "a", None, "x", "error")]
    assert correct(1.0) == 1 and correct(0.5) == 0 and correct(None) is None
    # Stage k is right on example i when (i + k) % 3 == 0: both wrong (they agree) when i % 3 == 1.
    assert disagreeing(pts) == {"0", "2", "3", "5"}
    same = [Point(s, "1", 0, "q", "a", 1.0, "a", "eos", example_score=1.0) for s in ("a", "b")]
    assert disagreeing(same) == set()
    d = data(pts, np.zeros((len(pts), 2)))
    assert d["stages"] == ["zero_shot", "few_shot", "rl"] and len(d["ex"]) == 7
    assert [e[3] for e in d["ex"]] == [1, 0, 1, 1, 0, 1, 0]
    assert d["p"]["ok"][-1] is None and d["p"]["ok"][0] == 1 and d["p"]["ok"][1] == 0


def test_figure_starts_coloured_by_score_with_one_colour_bar():
    pts = _pts(5) + [Point("few_shot", "x", 0, "q", "x" * 1000, None, "neg", "error")]
    fig = atlas_page.figure(pts, np.arange(2 * len(pts), dtype=float).reshape(-1, 2), "t")
    names = [t.name for t in fig.data]
    assert names[:2] == ["zero_shot", "few_shot"] and names[-3:] == ["pinned", "zero_shot", "few_shot"]
    assert [t.showlegend for t in fig.data[:2]] == [False, False]  # grey shapes stand in the legend
    assert [t.legendgroup for t in fig.data[-2:]] == [t.legendgroup for t in fig.data[:2]]
    assert sum(1 for t in fig.data if t.name.startswith("gold: ")) == 4
    assert [len(t.x) for t in fig.data[:2]] == [5, 6]
    assert list(fig.data[0].marker.color) == [p.score for p in pts[:5]]
    assert np.isnan(fig.data[1].marker.color[-1])  # unscored: no colour on the scale
    assert [bool(t.marker.showscale) for t in fig.data[:2]] == [True, False]
    assert fig.data[0].marker.symbol != fig.data[1].marker.symbol  # stages told apart by shape
    assert list(fig.data[1].customdata) == list(range(5, 11))  # points into the page's data


def test_fragment_has_the_panel_and_safe_data():
    pts = _pts(4) + [Point("few_shot", "x", 0, "q </script><b>", "<script>alert(1)</script>", 0.0, "neg", "eos")]
    html = atlas_page.fragment(pts, np.zeros((len(pts), 2)), "t")
    for control in ("name=\"colour\" value=\"score\" checked", "name='stage' value='0' checked",
                    "name='stage' value='1' checked", "name=\"correct\" value=\"wrong\"",
                    "name=\"disagree\"", "class=\"la-pin\"", "plotly_click"):
        assert control in html, control
    assert "<script>alert(1)" not in html and "</script><b>" not in html  # escaped inside the JSON
    blob = html.split('-data">', 1)[1].split("</script>", 1)[0]
    d = json.loads(blob)
    assert d["p"]["c"][-1] == "<script>alert(1)</script>" and len(d["p"]["x"]) == len(pts)
    assert "plotly.js v" not in html  # the fragment relies on the page's plotly.js


def test_hf_embedding_of_a_local_model(random_model):
    pytest.importorskip("torch")
    x = atlas.embed(["the food was great", "the soup was cold", "the food was great"], f"hf:{random_model}")
    assert x.shape == (3, 32) and np.allclose(x[0], x[2]) and not np.allclose(x[0], x[1])


class _Embeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /embeddings endpoint: a vector from each input's letters."""

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["encoding_format"] == "float"
        data = [{"object": "embedding", "index": i, "embedding": [t.count(c) + 0.1 for c in "aeiou"]}
                for i, t in enumerate(body["input"])]
        payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_compatible_embeddings(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        x = atlas.embed(["aaa", "eee", "aaa", ""], "openai:fake-embed")
        assert x.shape == (4, 5) and np.allclose(x[0], x[2]) and x[0].argmax() == 0 and x[1].argmax() == 1
    finally:
        server.shutdown()
    with pytest.raises(LadderError, match="openai:text-embedding"):
        atlas.embed(["a"], "openai")
    with pytest.raises(LadderError, match="unknown embedder"):
        atlas.embed(["a"], "bert")


def test_help_does_not_import_the_heavy_libraries():
    code = ("import sys\nsys.argv = ['ladder', '--help']\nimport ladder.cli\n"
            "try:\n    ladder.cli.main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('umap', 'plotly', 'sklearn', 'numba', 'torch') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", out.stderr
    assert "climb" in out.stdout and "atlas" in out.stdout and "report" in out.stdout


def test_plotly_js_is_inlined_once_in_atlas_and_report(finished):
    from plotly.offline import get_plotlyjs

    from ladder import plotly_bundle, report

    # Both pages draw scatter and bar traces only: plotly's basic bundle, never the 4.8 MB full one.
    bundle = plotly_bundle.BASIC.read_text(encoding="utf-8")
    signature = bundle[:200]  # the bundle's licence header and opening: once in the bundle itself
    full = get_plotlyjs()[:200]
    assert bundle.count(signature) == 1 and signature != full
    page = atlas.write(finished).read_text()
    assert page.count(signature) == 1 and full not in page and "la-pin" in page
    whole = report.write(finished).read_text()
    assert whole.count(signature) == 1 and full not in whole  # the report's copy; the atlas inside reuses it
    assert "la-pin" in whole and whole.index(signature) < whole.index("class=\"la-atlas\"")
    assert len(whole) < len(bundle) + 400_000  # one plotly.js plus the data of 120 points


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium not installed (Debian: apt-get install -y chromium; `make browser` does)")
def test_atlas_page_filters_and_pins_in_a_browser(finished, tmp_path):
    pytest.importorskip("websocket", reason="pip install websocket-client (the dev extra has it)")
    from scripts.check_report import check_page

    out = subprocess.run([sys.executable, "-m", "ladder.cli", "atlas", str(finished)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert out.returncode == 0, out.stderr
    page = finished / "atlas.html"
    assert out.stdout.strip() == str(page)
    points = atlas.load_points(finished)
    split = atlas_page.disagreeing(points)
    seen = check_page(page, tmp_path / "atlas.png")
    assert seen.errors == [] and seen.requests == []
    assert seen.page["drawn"] == 1 and seen.page["points"] == len(points) == 120 and seen.page["colorbars"] == 1

    def look(js):
        got = check_page(page, None, then="(() => { const root = document.querySelector('.la-atlas');"
                                          "const set = (sel, v) => { const i = root.querySelector(sel); i.checked = v;"
                                          "i.dispatchEvent(new Event('change', {bubbles: true})); };" + js + "})()")
        assert got.errors == [] and got.requests == []
        return got.page

    wrong = look("set('input[name=correct][value=wrong]', true);")
    assert wrong["points"] == sum(p.score == 0 for p in points) > 0
    assert wrong["colorbars"] == 1
    disagree = look("set('input[name=disagree]', true);")
    assert disagree["points"] == sum(p.example in split for p in points) > 0
    one_stage = look("set('input[name=stage][value=\"0\"]', false); set('input[name=stage][value=\"2\"]', false);")
    assert one_stage["points"] == sum(p.stage == "few_shot" for p in points) == 40
    by_stage = look("set('input[name=colour][value=stage]', true);")
    assert by_stage["colorbars"] == 0 and by_stage["points"] == 120
    # A click on a point (plotly's click event) pins its full text in the panel.
    pinned = check_page(page, tmp_path / "pinned.png", then=(
        "(() => { const gd = document.querySelector('.la-map .js-plotly-plot');"
        "gd.emit('plotly_click', {points: [{curveNumber: 2, customdata: 100}]});"
        "document.querySelectorAll('h1, h2').forEach(h => h.remove());"
        "const h = document.createElement('h2'); h.textContent = document.querySelector('.la-pin').textContent;"
        "document.body.appendChild(h); })()"))
    assert pinned.errors == []
    text = pinned.page["headings"][0]
    p = points[100]
    assert p.stage == "best_of_n" and p.prompt in text and "finish reason" in text and "sample" in text
    assert "This example in each stage" in text and "zero_shot" in text and "few_shot" in text


def test_tfidf_progress_line_counts_the_samples_not_the_distinct_texts(monkeypatch):
    """`ladder report` said "TF-IDF embedding of 3 samples" for 1,800 samples with 3 distinct answers."""
    from contextlib import contextmanager

    labels = []

    @contextmanager
    def bar(label, total):
        labels.append(label)
        yield lambda k: None

    monkeypatch.setattr(atlas, "progress_bar", bar)
    pts = _pts(n_examples=30)  # 60 samples, three distinct completions
    atlas.place(pts, "tfidf", "completion")
    tfidf = [label for label in labels if "TF-IDF" in label]
    assert tfidf and "of 60 samples" in tfidf[0] and "3 distinct" in tfidf[0], labels


def test_atlas_title_takes_two_lines_so_the_toolbar_never_covers_it():
    """At 800 px the one-line title ran under plotly's toolbar: name and count on the first line,
    the rest (texts, embedding, reduction) smaller on the second."""
    from ladder.atlas_page import figure

    pts = _pts(n_examples=4)
    xy = np.array([[float(i), float(i % 3)] for i in range(len(pts))])
    fig = figure(pts, xy, "exp: 8 points (one per example and stage) · 3 distinct completion texts · tfidf")
    head, rest = fig.layout.title.text.split("<br>")
    assert head == "exp: 8 points (one per example and stage)" and "3 distinct completion texts · tfidf" in rest
    assert fig.layout.margin.t >= 70
