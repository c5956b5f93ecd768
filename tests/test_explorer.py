"""The β1/β2 explorer of notebook 04: sliders that hold the params' values, a figure drawn before the
widget is shown (opaque, not blank), counts that follow the sliders, panels as the extension point."""

from __future__ import annotations

import html
import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from dualdistill.algorithm.selection import selection_counts
from dualdistill.report import explorer

GBARS = {"p1": 0.0, "p2": 0.25, "p3": 0.5, "p4": 0.75, "p5": 1.0}


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.mark.parametrize(("values", "step"), [((0.0, 0.9), 0.01), ((0.0, 0.125), 0.001), ((0.25, 0.75), 0.01)])
def test_slider_step_holds_the_params_values(values, step):
    assert explorer.slider_step(*values) == step


def test_first_render_has_the_figure_at_the_params_values():
    ex = explorer.BetaExplorer(GBARS, beta1=0.0, beta2=0.9, k=4)
    assert (ex.beta1.value, ex.beta2.value) == (0.0, 0.9) and ex.beta2.step == 0.01  # K = 4 would snap 0.9 to 1.0
    pixels = _pixels(ex.images[0].value)
    assert (pixels[..., 3] == 255).all()  # opaque: never a transparent image
    assert (pixels[..., :3] < 200).any(axis=-1).mean() > 0.02  # and something is drawn
    assert "β1 = 0 · β2 = 0.9 · " in ex.counts.value
    counts = selection_counts(GBARS, 0.0, 0.9)
    for key, *_ in explorer.BARS:
        assert f"data-count='{key}'>{counts.get(key, 0)}<" in ex.counts.value  # no_solution: 0 when not known



def test_headless_runs_keep_the_figure_not_the_widget(monkeypatch):
    ex = explorer.BetaExplorer(GBARS, beta1=0.0, beta2=0.9, k=4)
    monkeypatch.setenv("DUALDISTILL_PROGRESS", "bar")  # a person in Jupyter: the widget (+ PNG for static viewers)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    monkeypatch.setenv("DUALDISTILL_PROGRESS", "lines")  # under `dualdistill run`: the figure alone
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/plain"} and "β2 = 0.9" in bundle["text/plain"]


def test_moving_a_slider_redraws_and_recounts():
    ex = explorer.BetaExplorer(GBARS, beta1=0.0, beta2=0.9, k=4)
    first = ex.images[0].value
    ex.beta2.value = 0.3
    assert ex.drawn == (0.0, 0.3) and ex.images[0].value != first
    assert "data-count='correct'>2<" in ex.counts.value  # ḡ 0 and 0.25 are below 0.3
    ex.beta2.value = 0.3000000000000001  # a slider's float noise is not a change
    assert ex.drawn == (0.0, 0.3)
    ex.set(*ex.params)
    assert ex.drawn == (0.0, 0.9) and "data-count='correct'>4<" in ex.counts.value


def test_every_bar_is_explained():
    legend = explorer.legend_html()
    for _, label, _, text in explorer.BARS:
        assert f"<b>{html.escape(label)}</b>" in legend and html.escape(text) in legend
    assert [b[0] for b in explorer.BARS] == ["solved", "eligible", "verify", "correct", "both", "no_solution",
                                             "examples"]
    assert set(explorer.RULE_LABELS) == set(explorer.RULE_COLORS)  # every bar colour of the histogram has a legend entry


# (ḡ, β1, β2, the rule that takes the problem): strict inequalities, ḡ = 1 never taken
RULE_CASES = [(0.0, 0.0, 0.9, "correct"),  # ḡ = β1 = 0: not verify (ḡ > β1 is strict)
              (0.5, 0.0, 0.9, "both"), (0.9, 0.0, 0.9, "verify"),  # ḡ = β2: not a correction
              (0.5, 0.5, 0.5, "none"), (1.0, 0.0, 1.0, "solved")]


@pytest.mark.parametrize(("g", "beta1", "beta2", "rule"), RULE_CASES)
def test_histogram_bars_take_the_colour_of_their_rule(g, beta1, beta2, rule):
    assert explorer.rule_of(g, beta1, beta2) == rule
    fig = explorer.selection_panel([g], 4)(beta1, beta2)
    bar = fig.axes[0].patches[0]
    assert bar.get_facecolor()[:3] == pytest.approx(_rgb(explorer.RULE_COLORS[rule]))


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_counts_say_what_stage_04_can_build():
    """T2 counts only problems with a text-teacher solution; the selected others are 'no solution'."""
    counts = explorer.explorer_counts(GBARS, 0.0, 0.9, with_solution={"p2", "p3"})
    assert counts["verify"] == 3 and counts["correct"] == 4  # p2, p3, p4 verify; p1..p4 correct
    assert counts["no_solution"] == 2  # p1 (correct only) and p4 (both): no text-teacher solution
    assert counts["examples"] == 4  # p2 and p3, both rules each
    ex = explorer.BetaExplorer(GBARS, beta1=0.0, beta2=0.9, k=4, with_solution={"p2", "p3"})
    assert "data-count='examples'>4<" in ex.counts.value and "data-count='no_solution'>2<" in ex.counts.value


def test_invalid_thresholds_are_explained_in_the_figure():
    fig = explorer.selection_panel(GBARS, 4)(0.6, 0.2)
    assert "β1 > β2: not a valid config" in fig.axes[1].get_title() and "β2 ≤ ḡ ≤ β1" in fig.axes[1].get_title()
    assert "not a valid" not in explorer.selection_panel(GBARS, 4)(0.2, 0.6).axes[1].get_title()


def test_a_panel_is_any_function_of_the_thresholds():
    """The hook for a β sweep: one more panel, drawn with the others whenever a slider moves."""
    seen = []

    def sweep_panel(beta1: float, beta2: float) -> Figure:
        seen.append((beta1, beta2))
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1], [beta1, beta2])
        return fig

    ex = explorer.BetaExplorer(GBARS, beta1=0.0, beta2=0.9,
                               panels=[explorer.selection_panel(GBARS, 4), sweep_panel])
    ex.beta1.value = 0.5
    assert seen == [(0.0, 0.9), (0.5, 0.9)] and len(ex.images) == 2 and ex.images[1].value
