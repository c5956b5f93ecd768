"""Stage 06's figures as a reader meets them, on the fake run of tests/fixtures/analysis: accuracy in %
per subset with standard-error bars and the paired panel, the models in the method's order and one
colour each, zero tool use drawn, composition cases in words, titles with n, PNG and SVG."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex

from dualdistill.config import load_config
from dualdistill.report import figures
from dualdistill.report.metrics import compute_metrics
from dualdistill.report.views import key_figures
from dualdistill.stages import analysis

matplotlib.use("Agg")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "analysis"


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig") / "outputs"
    shutil.copytree(FIXTURE / "run", out / "fixture")
    cfg = load_config(FIXTURE / "params.yaml", {"output_dir": str(out)})
    return analysis.load_eval_rows(cfg), analysis.eval_paired(cfg), out


def test_accuracy_se_is_over_problems():
    """SE = sd of the per-problem mean accuracies / √n: two problems at 1 and 0 → 0.5 ± 0.5."""
    feats = [{"problem_id": p, "sample": s, "ok": True, "correct": c, "official_correct": None, "answer": "1",
              "n_code_calls": 0, "n_code_errors": 0, "n_code_timeouts": 0, "n_tokens": 1, "truncated": False,
              "format_valid": True} for p, s, c in (("a", 0, True), ("a", 1, True), ("b", 0, False), ("b", 1, False))]
    m = compute_metrics(feats)
    assert m["accuracy"] == 0.5 and m["accuracy_se"] == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
    assert compute_metrics(feats[:2])["accuracy_se"] == 0.0  # one problem: no spread to estimate


def test_model_order_and_one_colour_per_model():
    assert figures.model_order(["S2", "zeta", "S1", "tool_only", "S0", "text_only"]) == [
        "S0", "text_only", "tool_only", "S1", "S2", "zeta"]
    colours = [figures.model_color(m) for m in figures.MODEL_ORDER]
    assert len(set(colours)) == len(colours) and figures.model_color("zeta") == figures.model_color("zeta")


def test_accuracy_figure_one_panel_per_subset_with_error_bars_and_the_paired_panel(fixture_data, tmp_path):
    rows, paired, _ = fixture_data
    fig = figures.plot_accuracy(rows, tmp_path / "acc.png", paired=paired)
    panels = figures.accuracy_panels(rows)
    world_s = [p for p in panels if (p["benchmark"], p["budget"]) == ("world_test", "S")]
    assert [p["subset"] for p in world_s] == ["all", "computation", "insight"]
    assert world_s[0]["models"] == ["S0", "S1", "S2"] and world_s[0]["accuracy"] == [25.0, 75.0, 87.5]  # in %
    assert world_s[0]["n_problems"] == 4 and world_s[0]["se"][0] == pytest.approx(100 * math.sqrt(4 * 0.25**2 / 3) / 2)  # S0: per problem 0, .5, .5, 0
    first_row = fig.axes[:4]
    for ax, p in zip(first_row[:3], world_s, strict=True):
        assert p["subset"] in ax.get_title() and "n = " in ax.get_title()
        bars = [c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer)]
        assert [to_hex(b.get_facecolor()) for b in bars[0]] == [figures.model_color(m) for m in p["models"]]
        assert bars[0].errorbar is not None  # standard-error bars on every bar
        assert ax.get_ylim()[1] > 100 and ax.get_ylabel() in ("accuracy (%)", "")
    paired_ax = first_row[3]
    assert [t.get_text() for t in paired_ax.get_yticklabels()] == ["S2 − S1", "S1 − S0"]
    texts = [t.get_text() for t in paired_ax.texts]
    assert "all: +12.5 ± 12.5" in texts  # S2 − S1 on world_test at S, in points
    assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "acc.svg").read_text().lstrip().startswith("<?xml")


def test_paired_points_put_s2_minus_s1_first():
    paired = [{"model": "S1", "against": a, "benchmark": "w", "budget": "S", "subset": "all", "metric": "accuracy",
               "delta": 0.1, "se": 0.05, "n_problems": 10} for a in ("tool_only", "S0", "text_only")]
    paired.append({**paired[0], "model": "S2", "against": "S1", "delta": -0.02})
    labels = [p["label"] for p in figures.paired_points(paired, "w", "S")]
    assert labels == ["S2 − S1", "S1 − S0", "S1 − text_only", "S1 − tool_only"]


def test_tool_use_draws_zero(fixture_data, tmp_path):
    rows, _, _ = fixture_data
    fig = figures.plot_tool_use(rows, tmp_path / "tool.png")
    ax = fig.axes[0]
    s0 = next(c for c in ax.collections if c.get_label() == "S0")
    assert len(s0.get_offsets()) == 5 and all(y == 0 for _, y in s0.get_offsets())  # S0: a dot at 0 per subset
    assert ax.get_ylim()[0] < 0 and "0" in [t.get_text() for t in ax.texts]
    assert "samples that call code (%)" == ax.get_ylabel() and "n = 4 problems" in ax.get_title()


def test_composition_names_cases_in_words(tmp_path):
    examples = [{"case": c, "first": f, "subset": "computation"} for c, f in (("01", "text"), ("11", "agent"))]
    fig = figures.plot_composition(examples, tmp_path / "comp.png")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == [figures.CASE_NAMES["01"], figures.CASE_NAMES["11"]] and "switch" in ticks[0]
    assert not set(figures.CASE_COLORS.values()) & set(figures.TEACHER_COLORS.values())  # no colour means two things


def test_gbar_histogram_has_a_title(tmp_path):
    fig = figures.plot_gbar_hist([0.0, 0.5, 1.0], tmp_path / "g.png", k=4)
    assert "K = 4" in fig.axes[0].get_title() and "n = 3 problems" in fig.axes[0].get_title()


def test_unchanged_figure_leaves_both_files_alone(fixture_data, tmp_path):
    rows, paired, _ = fixture_data
    figures.plot_accuracy(rows, tmp_path / "a.png", paired=paired)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    figures.plot_accuracy(rows, tmp_path / "a.png", paired=paired)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps and len(stamps) == 2


def test_key_figures_show_fractions_in_percent():
    table = key_figures({"accuracy": {"S1": 0.394444}, "t1_cases": {"01": 3}, "trajectories_per_minute": 0.5})
    assert table.loc["accuracy / S1", "value"] == "39.4 %"
    assert table.loc["t1_cases / 01", "value"] == 3 and table.loc["trajectories_per_minute", "value"] == 0.5
