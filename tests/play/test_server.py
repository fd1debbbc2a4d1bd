"""`ladder play`'s HTTP side through Starlette's test client: the token, keys kept out, streamed
cells, and each bad input a clear message while the other columns go on."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from ladder.play.core import Playground  # noqa: E402
from ladder.play.server import build_app  # noqa: E402
from ladder.play.variant import digest  # noqa: E402
from ladder.testing.fake_api import FakeAPIServer  # noqa: E402
from tests.backends.api_support import KEY, KEY_ENV  # noqa: E402
from tests.play.support import fake_experiment, responder  # noqa: E402

TOKEN = "t0ken-for-tests"


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=responder) as srv:
        cfg = fake_experiment(tmp_path, srv.base_url)
        pg = Playground(cfg, n=5, resume=False)
        client = TestClient(build_app(pg, TOKEN, digest(cfg)), headers={"X-Ladder-Token": TOKEN})
        yield client, pg, cfg


def run(client, **data):
    res = client.post("/api/run", json=data)
    assert res.status_code == 200
    return [json.loads(line) for line in res.text.splitlines()]


def test_every_request_needs_the_token(page):
    client, _, _ = page
    bare = TestClient(client.app)
    for path in ("/", "/static/play.js", "/api/state", "/api/state?token=wrong"):
        assert bare.get(path).status_code == 403, path
    assert bare.post("/api/run", json={}).status_code == 403
    assert bare.get(f"/?token={TOKEN}").status_code == 200
    assert client.get("/static/../server.py").status_code == 404


def test_cells_stream_and_the_key_never_reaches_the_page_or_the_log(page):
    client, pg, _ = page
    html = client.get(f"/?token={TOKEN}").text
    assert "<script src=\"static/play.js?token=" + TOKEN in html and "http" not in html.split("<script")[1]
    lines = run(client)
    assert [x["type"] for x in lines].count("cell") == 5 and lines[-1]["type"] == "done"
    state = lines[-1]["state"]
    assert state["columns"][0]["metric"]["n"] == 5
    everything = html + client.get("/static/play.js").text + json.dumps(state) + "".join(json.dumps(x) for x in lines)
    assert KEY not in everything and KEY_ENV in json.dumps(state)  # the variable's name, never its value
    assert KEY not in pg.log.path.read_text()


def test_a_missing_template_column_and_an_unreachable_model_fail_only_their_columns(page):
    client, pg, _ = page
    bad = client.post("/api/column", json={"template": "Review: {nosuch}"}).json()["id"]
    down = client.post("/api/column", json={"model": {"backend": "openai", "name": "gone", "api_key_env": None,
                                                      "base_url": "http://127.0.0.1:9/v1"}}).json()["id"]
    lines = run(client)
    cells = [x for x in lines if x["type"] == "cell"]
    assert len(cells) == 15
    assert all("nosuch" in c["error"] for c in cells if c["column"] == bad)
    assert all("127.0.0.1:9" in c["error"] for c in cells if c["column"] == down)
    good = [c for c in cells if c["column"] not in (bad, down)]
    assert len(good) == 5 and all(c["outputs"] and not c["error"] for c in good)


def test_a_run_past_the_budget_is_refused_until_it_is_raised(page):
    client, pg, _ = page
    client.post("/api/rows", json={"budget": 0.000001})
    lines = run(client)
    assert not any(x["type"] == "cell" for x in lines)
    (err,) = [x for x in lines if x["type"] == "error"]
    assert "budget" in err["message"] and "raise the budget" in err["message"]
    client.post("/api/rows", json={"budget": 1})
    assert [x["type"] for x in run(client)].count("cell") == 5


def test_save_refuses_a_yaml_changed_since_the_page_opened(page):
    client, pg, cfg = page
    run(client)
    cid = next(iter(pg.columns))
    cfg.write_text(cfg.read_text() + "# someone else's edit\n")
    res = client.post("/api/save", json={"column": cid, "name": "late"})
    assert res.status_code == 409 and "changed on disk" in res.json()["error"]
    assert "variants" not in cfg.read_text()


def test_chat_answers_from_every_model_and_a_free_message_is_a_row(page):
    client, pg, _ = page
    out = client.post("/api/chat", json={"system": "Be brief.", "turns": [{"role": "user", "content": "a great meal"}],
                                         "models": ["fake-good", "fake-lazy", '{"backend": "nope", "name": "x"}']}).json()
    assert out["replies"]["openai:fake-good"]["text"] == "positive"
    assert out["replies"]["openai:fake-lazy"]["text"] == "neutral"
    assert "unknown" in out["replies"]["nope:x"]["error"] or "nope" in out["replies"]["nope:x"]["error"]
    threads = [[{"role": "user", "content": "rude"}, {"role": "assistant", "content": "negative"},
                {"role": "user", "content": "and?"}], [{"role": "user", "content": "hi"}]]
    two = client.post("/api/chat", json={"models": ["fake-lazy", "fake-good"], "threads": threads}).json()
    assert list(two["replies"]) == ["openai:fake-lazy", "openai:fake-good"]
    assert two["replies"]["openai:fake-lazy"]["text"] == "negative"  # it saw its own earlier answer
    state = client.post("/api/rows", json={"message": "the soup was lovely"}).json()
    assert state["rows"][0] == {"id": "msg-1", "text": "the soup was lovely", "target": None, "message": True}
    cells = [x for x in run(client) if x["type"] == "cell"]
    assert len(cells) == 6 and next(c for c in cells if c["row"] == "msg-1")["score"] is None


def test_reopening_restores_the_session(page, tmp_path):
    client, pg, cfg = page
    client.post("/api/column", json={"instruction": "Label it.", "model": "fake-lazy"})
    run(client)
    again = Playground(cfg, n=5, session=pg.log.session)
    assert set(again.columns) == set(pg.columns)
    assert {k: v.outputs for k, v in again.cells.items()} == {k: v.outputs for k, v in pg.cells.items()}
    assert again.spent == pytest.approx(pg.spent)


def test_the_hf_backend_works_in_the_page(tmp_path):
    from tests.conftest import experiment

    cfg = experiment(tmp_path, "ladder-tiny", generation={"max_tokens": 4})
    pg = Playground(cfg, n=3, resume=False)
    client = TestClient(build_app(pg, TOKEN, digest(cfg)), headers={"X-Ladder-Token": TOKEN})
    row = pg.rows()[0]
    client.post("/api/column", json={"instruction": "Answer in one word.", "shots": [{"id": row, "answer": "positive"}]})
    cells = [x for x in run(client) if x["type"] == "cell"]
    assert len(cells) == 6 and all(not c["error"] and c["score"] is not None for c in cells), cells
    assert all(c["cost"] == 0 for c in cells)  # a local model


def test_a_column_with_impossible_settings_is_refused_in_one_line(page):
    client, pg, _ = page
    res = client.post("/api/column", json={"generation": {"temperature": 7}})
    assert res.status_code == 400 and "generation.temperature" in res.json()["error"]
    res = client.post("/api/column", json={"model": {"backend": "openai", "name": "x", "concurrency": 0}})
    assert res.status_code == 400 and "model.concurrency" in res.json()["error"]
    assert len(pg.columns) == 1 and client.get("/api/state").status_code == 200
