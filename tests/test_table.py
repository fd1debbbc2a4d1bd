"""The terminal stage table: at any width from 80 columns every row's stage, value with its full
CI, n and Δs are printed whole; what does not fit is folded under the table, never cut."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ladder.table import COLUMNS, _value, diff_text, print_table, stage_label


def _row(stage: str, value: float, lo: float, hi: float, n: int, **extra) -> dict:
    row = {**dict.fromkeys(COLUMNS, ""), "stage": stage, "type": stage, "metric": "accuracy", "value": value,
           "ci_low": lo, "ci_high": hi, "n": n, "errors": 0, "stop_hit_rate": 0.0123, "prompt_tokens": 123456,
           "completion_tokens": 7890, "cost_usd": 0.0, "seconds": 12.34, "flags": "", "checks": "",
           "oracle": False}
    row.update(extra)
    return row


def _diff(key: str, v: float, lo: float, hi: float, n: int) -> dict:
    return {key: v, f"{key}_ci_low": lo, f"{key}_ci_high": hi, f"{key}_n": n}


def rows() -> list[dict]:
    """Five stages with the longest cells ladder makes: K-way columns, an oracle best-of-N, a
    baseline line under rl, flags and checks, negative and positive Δs."""
    k = dict(chance=0.333333, majority=0.356667, unparsed=0.0234)
    return [
        _row("zero_shot", 0.617, 0.561123, 0.673456, 1821, **k, flags="subsample_small; stop_hit_low"),
        _row("few_shot", 0.652, 0.598, 0.7061, 1821, **k, **_diff("diff_prev", 0.035, -0.0123, 0.0812, 1821),
             **_diff("diff_zero", 0.035, -0.0123, 0.0812, 1821)),
        _row("best_of_n", 0.7921, 0.7512, 0.8311, 1821, **k, oracle=True, flags="oracle_selector",
             **_diff("diff_prev", 0.1401, 0.1002, 0.1803, 1821), **_diff("diff_zero", 0.1751, 0.1312, 0.2198, 1821)),
        _row("sft", 0.5012, 0.4511, 0.5523, 1821, **k, checks="chance_loss ok; train_test_overlap ok",
             flags="unparsed_high; majority_class_collapse; loss_not_decreasing",
             **_diff("diff_prev", -0.2909, -0.3401, -0.2412, 1821), **_diff("diff_zero", -0.1158, -0.1601, -0.0702, 1821)),
        _row("rl", 0.6671, 0.6123, 0.7198, 1821, **k, **_diff("diff_prev", 0.1659, 0.1201, 0.2101, 1821),
             **_diff("diff_zero", 0.0501, 0.0012, 0.0998, 1821), baseline="best_of_8 (oracle)",
             baseline_value=0.7012, baseline_ci_low=0.6512, baseline_ci_high=0.7498, baseline_n=1821,
             baseline_diff=-0.0341, baseline_diff_ci_low=-0.0701, baseline_diff_ci_high=0.0012),
    ]


def render(width: int, wide: bool = False, table_rows: list[dict] | None = None) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    print_table(table_rows or rows(), "sentiment  (results/sentiment)", wide=wide, console=console)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100, 200])
def test_every_value_ci_n_and_delta_is_printed_whole(width):
    text = render(width)
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= width
    for row in rows():
        for whole in (stage_label(row), _value(row), str(row["n"]), diff_text(row, "diff_prev"),
                      diff_text(row, "diff_zero")):
            assert whole in text, (width, whole, text)
    assert "↳ best_of_8 (oracle)" in text and "0.701 [0.651, 0.750]" in text  # rl's baseline line
    assert "+0.034 [−0.001, +0.070]" in text or "+0.034 [-0.001, +0.070]" in text


@pytest.mark.parametrize("width", [80, 100, 200])
def test_flags_and_chance_survive_folding(width):
    text = render(width)
    for flag in ("subsample_small", "majority_class_collapse", "loss_not_decreasing", "chance_loss ok",
                 "oracle_selector"):
        assert flag in text, (width, flag, text)
    # chance and majority are shown, in a column, a compact column or a list under the table
    assert ("0.333 / 0.357" in text) or (".33/.36" in text) or ("chance 0.333 / majority 0.357" in text)
    assert "2%" in text  # unparsed


def test_wide_table_is_folded_only_when_it_must_be():
    wide, narrow = render(200), render(80)
    assert "flags" in wide.splitlines()[1] + wide.splitlines()[2]  # a column at 200 …
    assert "(a) zero_shot" in narrow  # … a lettered list under the table at 80
    assert "chance / maj." in wide


@pytest.mark.parametrize("width", [80, 100])
def test_wide_shows_tokens_cost_and_seconds_in_a_table_that_fits(width):
    plain, wide = render(width), render(width, wide=True)
    assert "123456/7890" not in plain and "12.34" not in plain
    assert "123456/7890" in wide and "12.34" in wide and "1%" in wide
    assert max(map(len, wide.splitlines())) <= width and "…" not in wide


def test_chance_differing_between_stages_is_listed_per_stage():
    table_rows = rows()
    table_rows[3]["chance"], table_rows[3]["unparsed"] = 0.25, 0.31
    text = render(80, table_rows=table_rows)
    assert "sft: chance 0.250 / majority 0.357, unparsed 31%" in text
    assert "few_shot: chance 0.333 / majority 0.357, unparsed 2%" in text


def test_several_metrics_keep_a_metric_column():
    two = rows()[:2]
    two[1]["metric"] = "exact_match"
    text = render(100, table_rows=two)
    assert "exact_match" in text and "accuracy" in text


@pytest.mark.parametrize("width", [80, 200])
def test_unparsed_without_chance_is_still_shown(width):
    table_rows = rows()[:2]
    for row in table_rows:
        row["chance"] = row["majority"] = ""
    text = render(width, table_rows=table_rows)
    assert "2%" in text and "chance" not in text.replace("unparsed", "")


def test_all_zero_differences_say_identical_outputs(tmp_path):
    """A Δ whose per-example differences are all 0 is not a zero-width measurement: every table
    (terminal, summary.md, report) says "identical outputs"; a real difference keeps its interval."""
    import io

    from rich.console import Console

    from ladder.report import table_html
    from ladder.table import read_summary
    from tests.test_advice import results_folder, scores

    zero = scores(0.5)
    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", zero), "few_shot": ("few_shot", list(zero)),
                                       "best_of_n": ("best_of_n", scores(0.9, seed=1))})
    rows = read_summary(folder)
    assert diff_text(rows[1], "diff_zero") == "identical outputs" == diff_text(rows[1], "diff_prev")
    assert diff_text(rows[2], "diff_prev").startswith("+") and "[" in diff_text(rows[2], "diff_prev")
    md = (folder / "summary.md").read_text()
    assert "identical outputs" in md and "0.000 [0.000, 0.000]" not in md and "+0.000 [+0.000, +0.000]" not in md
    page = table_html(rows)
    assert "identical outputs" in page and "[+0.000, +0.000]" not in page
    buf = io.StringIO()
    print_table(rows, "t", console=Console(file=buf, width=200))
    assert "identical outputs" in buf.getvalue() and "[+0.000, +0.000]" not in buf.getvalue()


@pytest.mark.parametrize("width", range(80, 90))
def test_long_labels_fold_instead_of_cutting_values(width):
    """At 80–89 columns a long label (rl's real baseline line) wraps onto a second line; every
    value with its CI, n and Δ stays whole — the README promises whole values from 80 columns."""
    table_rows = rows()
    table_rows[4]["baseline"] = "best-of-8, same reward (oracle)"
    text = render(width, table_rows=table_rows)
    assert "…" not in text and max(map(len, text.splitlines())) <= width, text
    for row in table_rows:
        for whole in (_value(row), str(row["n"]), diff_text(row, "diff_prev"), diff_text(row, "diff_zero")):
            assert whole in text, (width, whole, text)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "↳ best-of-8, same" in line)
    assert "0.701 [0.651, 0.750]" in lines[at] and "(oracle)" in lines[at + 1].split("  ")[0], text
