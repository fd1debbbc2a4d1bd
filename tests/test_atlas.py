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

from ladder import atlas
from ladder.atlas import Point
from ladder.config import load_experiment
from ladder.errors import LadderError
from ladder.runner import run_experiment
from tests.conftest import REPO, experiment
from tests.test_climb import ORACLE

pytest.importorskip("umap", reason="pip install umap-learn (a dependency of ladder)")


@pytest.fixture
def finished(tmp_path):
    stages = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2}]
    exp = load_experiment(experiment(tmp_path, "unused", stages=stages, model=ORACLE))
    run_experiment(exp)
    return exp.results_path


def test_points_are_every_sample_of_every_stage(finished):
    points = atlas.load_points(finished)
    assert len(points) == 80 and {p.stage for p in points} == {"zero_shot", "few_shot"}
    p = next(p for p in points if p.stage == "few_shot")
    assert p.prompt.startswith("Review: the meal") and p.completion == p.label and p.score == 1.0
    assert p.finish == "eos"
    assert len(atlas.load_points(finished, ["few_shot"])) == 40
    with pytest.raises(LadderError, match="no finished stages"):
        atlas.load_points(finished / "nowhere")


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


def test_figure_traces_buttons_and_escaped_hover():
    pts = [Point("zero_shot", "1", 0, "q <b>bold</b>", "<script>x</script>", 0.0, "neg", "length"),
           Point("few_shot", "1", 0, "q", "fine", 1.0, "pos", "eos"),
           Point("few_shot", "2", 1, "q", "x" * 1000, None, "neg", "error")]
    fig = atlas.figure(pts, np.array([[0, 0], [1, 1], [2, 2]], dtype=float), "t")
    names = [t.name for t in fig.data]
    assert names == ["zero_shot", "few_shot", "label: neg", "label: pos"]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["colour: stage", "colour: score", "colour: label"]
    for b in buttons:
        assert all(len(v) == len(fig.data) for v in b.args[0].values())
    assert buttons[1].args[0]["marker.color"][1] == [1.0, None] or np.isnan(buttons[1].args[0]["marker.color"][1][1])
    hover = fig.data[0].hovertext[0]
    assert "&lt;script&gt;" in hover and "<script>" not in hover and "&lt;b&gt;bold" in hover
    assert len(fig.data[1].hovertext[1]) < 700 and "…" in fig.data[1].hovertext[1]


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


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium not installed (Debian: apt-get install -y chromium; `make setup` does)")
def test_atlas_page_opens_offline_and_recolours(finished, tmp_path):
    pytest.importorskip("websocket", reason="pip install websocket-client (the dev extra has it)")
    from scripts.check_report import check_page, click

    out = subprocess.run([sys.executable, "-m", "ladder.cli", "atlas", str(finished)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert out.returncode == 0, out.stderr
    page = finished / "atlas.html"
    assert out.stdout.strip() == str(page)
    seen = check_page(page, tmp_path / "atlas.png", then=click("colour: score"))
    assert seen.errors == [] and seen.requests == []
    assert seen.page["drawn"] == 1 and seen.page["points"] == 80
    assert seen.page["colorbars"] == 1  # the score button switched the colouring
