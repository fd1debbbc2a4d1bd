"""The report and atlas inline the smallest plotly.js that draws their figures."""

import plotly.graph_objects as go

from ladder import plotly_bundle
from ladder.plotly_bundle import bundled_traces, script_for, used_traces, version


def _html(*traces, log_axis=False) -> str:
    fig = go.Figure(list(traces))
    if log_axis:
        fig.update_xaxes(type="log")
    return fig.to_html(full_html=False, include_plotlyjs=False)


def test_used_traces_reads_the_traces_not_the_template_or_axis_types():
    body = _html(go.Scatter(x=[1], y=[1]), go.Bar(x=[1], y=[2]), log_axis=True)
    assert used_traces(body) == {"scatter", "bar"}


def test_shipped_basic_bundle_matches_the_plotly_package():
    # The figure JSON is written by the plotly package for its own plotly.js version: a basic bundle
    # of another version falls back to the full one (and this test says the asset needs updating:
    # `npm pack plotly.js-basic-dist-min@<version>`, see ladder/plotly_bundle.py).
    from plotly.offline import get_plotlyjs

    basic = plotly_bundle.BASIC.read_text(encoding="utf-8")
    assert version(basic) == version(get_plotlyjs()) is not None
    assert {"scatter", "bar"} <= bundled_traces(basic) and "scattergl" not in bundled_traces(basic)
    assert "scattergl" in bundled_traces(get_plotlyjs())


def test_scatter_and_bar_pages_get_the_basic_bundle():
    tag = script_for(_html(go.Scatter(x=[1], y=[1]), go.Bar(x=[1], y=[2])))
    assert "plotly.js (basic - minified)" in tag[:300]
    assert len(tag) < 1_500_000


def test_a_trace_outside_the_basic_bundle_gets_the_full_one():
    tag = script_for(_html(go.Scattergl(x=[1], y=[1])))
    assert "(basic" not in tag[:300] and "scattergl" in bundled_traces(tag)
    assert len(tag) > 4_000_000
