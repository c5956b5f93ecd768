"""`dualdistill sweep`: the grid, its points and their run directories, refusals, the table, the figure
and the explorer's panel (fast); and a 2-point grid on the smoke run through the notebooks (slow):
S1 and its samples reused and left alone, one S2, executed notebooks and results row per point,
resumable, the base run's own config as a point reuses its S2."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualdistill.artifacts.current import sweep_rows
from dualdistill.artifacts.paths import RunPaths
from dualdistill.cli import main as cli_main
from dualdistill.config import ConfigError
from dualdistill.pipeline import sweep
from dualdistill.report import explorer, figures, tables
from dualdistill.training.stamp import model_fingerprint
from tests.conftest import SMOKE


# --- the grid -----------------------------------------------------------------------------------
def test_parse_grid_reads_values_as_yaml_and_refuses_bad_items():
    grid = sweep.parse_grid(["self_distill.beta1=0,0.5", "self_distill.beta2=0.5,0.9,1.0", "eval.samples=2"])
    assert grid == {"self_distill.beta1": [0, 0.5], "self_distill.beta2": [0.5, 0.9, 1.0], "eval.samples": [2]}
    for bad, msg in ((["beta1"], "must look like"), (["a.b=1", "a.b=2"], "twice"), (["a.b="], "no values"), ([], "at least")):
        with pytest.raises(ConfigError, match=msg):
            sweep.parse_grid(bad)


def test_point_names_are_run_names():
    assert sweep.point_name({"self_distill.beta1": 0, "self_distill.beta2": 0.9}) == "beta1-0_beta2-0.9"
    assert sweep.point_name({"sft.learning_rate": 1e-3, "self_distill.sft.learning_rate": 5e-4}) == \
        "sft.learning_rate-0.001_self_distill.sft.learning_rate-0.0005"  # same leaf twice: the whole path
    assert sweep.point_name({"self_distill.pick": "first/x"}) == "pick-first-x"


def test_plan_points_live_under_the_base_run_and_invalid_points_are_listed():
    base, points, invalid = sweep.plan(SMOKE, {"output_dir": "/tmp/o"}, {"self_distill.beta1": [0.0, 0.95],
                                                                         "self_distill.beta2": [0.5, 0.9]})
    assert [p.name for p in points] == ["beta1-0_beta2-0.5", "beta1-0_beta2-0.9"]
    assert [v for v, _ in invalid] == [{"self_distill.beta1": 0.95, "self_distill.beta2": 0.5},
                                       {"self_distill.beta1": 0.95, "self_distill.beta2": 0.9}]
    assert "must not exceed" in invalid[0][1]
    p05, p09 = points
    assert RunPaths.of(p05.cfg).root == Path("/tmp/o/smoke/sweep/beta1-0_beta2-0.5")
    assert p05.cfg.self_distill.beta2 == 0.5 and p05.cfg.eval.models == ["S2"]  # a point evaluates S2 only
    assert not p05.base and p09.base  # 0 / 0.9 are smoke.yaml's own values: the base run is that point


def test_plan_refuses_fields_that_change_s1():
    with pytest.raises(ConfigError, match="changes S1"):
        sweep.plan(SMOKE, {}, {"sft.learning_rate": [1e-3, 2e-3]})
    with pytest.raises(ConfigError, match="changes S1"):
        sweep.plan(SMOKE, {}, {"world.n_train": [48, 60]})
    sweep.plan(SMOKE, {}, {"self_distill.temperature": [0.6, 1.0], "eval.samples": [1, 2]})  # stages 04-05: fine


# --- table, figure, panel on hand-made rows ----------------------------------------------------------
def _row(b1: float, b2: float, acc: float, tool: float) -> dict:
    res = [{"benchmark": "w", "budget": "S", "subset": s, "n_problems": 10, "n_samples": 30,
            "s2_accuracy": acc + d, "s2_tool_use": tool, "s1_accuracy": 0.6 + d, "s1_tool_use": 0.7,
            "delta": acc - 0.6, "se": 0.01, "n_paired": 10, "tool_delta": tool - 0.7, "tool_se": 0.02}
           for s, d in (("all", 0.0), ("computation", 0.1), ("either", -0.1))]
    return {"point": sweep.point_name({"self_distill.beta1": b1, "self_distill.beta2": b2}),
            "values": {"self_distill.beta1": b1, "self_distill.beta2": b2}, "base": False,
            "t2": {"examples": int(100 * b2), "verify": 10, "correct": int(100 * b2) - 10, "replay_t1": 0},
            "results": res}


ROWS = [_row(b1, b2, 0.6 + 0.1 * b2 - 0.05 * b1, 0.7 - 0.2 * b2) for b1 in (0.0, 0.5) for b2 in (0.5, 0.9, 1.0)]


def test_sweep_table_has_a_line_per_point():
    md = tables.sweep_table(ROWS)
    lines = md.splitlines()
    assert len(lines) == 2 + len(ROWS) and lines[0].startswith("| beta1 | beta2 | T2 (verify/correct) | all: S2 acc")
    assert "| 0 | 0.9 | 90 (10/80) | 69.0 (+9.0 ± 1.0) |" in md


def test_plot_sweep_draws_every_subset_and_t2(tmp_path):
    fig = figures.plot_sweep(ROWS, tmp_path / "s.png", fields=["self_distill.beta1", "self_distill.beta2"])
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert "either: S2 accuracy (%)" in titles and "computation: S2 tool use (%)" in titles
    assert "T2 examples" in titles and fig.axes[0].get_xlabel() == "beta2"  # the field with most values on x
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_panel_shows_the_nearest_measured_point():
    assert explorer.nearest_point(ROWS, 0.1, 0.85)["point"] == "beta1-0_beta2-0.9"
    assert explorer.nearest_point([], 0.0, 0.9) is None
    fig = explorer.sweep_panel(ROWS)(0.45, 1.0)
    assert "beta1 = 0.5, beta2 = 1" in fig.axes[0].get_title() and "T2 100 examples" in fig.axes[1].get_title()
    pixels = np.asarray(Image.open(io.BytesIO(explorer.png(fig))).convert("RGBA"))
    assert (pixels[..., 3] == 255).all() and (pixels[..., :3] < 200).any(axis=-1).mean() > 0.02
    ex = explorer.BetaExplorer({"p": 0.5}, beta1=0.0, beta2=0.9, k=4,
                               panels=[explorer.selection_panel({"p": 0.5}, 4), explorer.sweep_panel(ROWS)])
    assert len(ex.images) == 2 and ex.images[1].value


# --- on the smoke run ---------------------------------------------------------------------------------
def _per_problem(path: Path, row: dict) -> dict[str, float]:
    """Mean correctness per problem of the latest record per sample, for the row's benchmark and budget."""
    latest: dict[tuple[str, int], bool] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["benchmark"] == row["benchmark"] and str(r["budget"]) == str(row["budget"]):
            latest[(r["problem"]["id"], r["sample"])] = bool(r["correct"]) and r["status"] == "ok"
    by: dict[str, list[bool]] = {}
    for (pid, _), ok in latest.items():
        by.setdefault(pid, []).append(ok)
    return {pid: sum(v) / len(v) for pid, v in by.items()}


@pytest.mark.slow
def test_sweep_on_the_smoke_run(smoke_run, capsys):
    cfg, _, _ = smoke_run
    paths = RunPaths.of(cfg)
    samples_before = paths.sd_samples.read_bytes()
    s2_before = model_fingerprint(paths.model("S2"))
    code = cli_main(["sweep", str(SMOKE), "--grid", "self_distill.beta2=0.5,1.0", "--set",
                     f"output_dir={cfg.output_dir}", "--quiet"])
    assert code == 0
    shown = capsys.readouterr().out
    assert "| beta2 | T2 (verify/correct) |" in shown and "results:" in shown
    rows = {r["point"]: r for r in sweep_rows(cfg)}
    assert sorted(rows) == ["beta2-0.5", "beta2-1"]
    for name, row in rows.items():
        root = paths.sweep / name
        assert row["run_dir"] == str(root) and not row["base"]
        assert [Path(n).name for n in row["notebooks"]] == ["04_self_distillation.ipynb", "05_evaluation.ipynb"]
        assert all(Path(n).is_file() for n in row["notebooks"])
        assert (root / "models" / "S1").is_symlink() and (root / "models" / "S1").resolve() == paths.model("S1").resolve()
        assert not (root / "self_distill" / "samples.jsonl").is_symlink()  # a copy: the base's file is never written
        assert (root / "models" / "S2" / "config.json").is_file()
        assert json.loads((root / "self_distill" / "metrics.json").read_text())["samples_drawn"] == 0  # reused
        overall = next(r for r in row["results"] if r["subset"] == "all")
        assert overall["n_problems"] == cfg.world.n_test and overall["n_paired"] == cfg.world.n_test
        # S2 − S1 ± SE recomputed by hand from the records: per-problem means, paired by problem
        s1 = _per_problem(paths.eval_records("S1"), overall)
        s2 = _per_problem(root / "eval" / "S2.jsonl", overall)
        diffs = [s2[p] - s1[p] for p in s1 if p in s2]
        assert overall["s2_accuracy"] == pytest.approx(statistics.mean(s2.values()))
        assert overall["s1_accuracy"] == pytest.approx(statistics.mean(s1.values()))
        assert overall["delta"] == pytest.approx(statistics.mean(diffs))
        assert overall["se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(len(diffs)))
        assert {r["subset"] for r in row["results"]} >= {"all", "computation", "insight", "either"}
        assert row["t2"]["examples"] == row["t2"]["verify"] + row["t2"]["correct"]
    assert paths.sd_samples.read_bytes() == samples_before and model_fingerprint(paths.model("S2")) == s2_before
    assert (paths.sweep / "sweep.png").is_file() and "| beta2 |" in (paths.sweep / "results.md").read_text()
    # resumable: finished points are skipped; the base run's own β2 (0.9) is the base run, not retrained
    result = sweep.run_sweep(SMOKE, {"self_distill.beta2": [0.5, 0.9]}, {"output_dir": cfg.output_dir}, progress=False)
    assert result["status"] == {"beta2-0.5": "skipped", "beta2-0.9": "base"}
    base_row = next(r for r in result["rows"] if r["point"] == "beta2-0.9")
    assert base_row["run_dir"] == str(paths.root) and not (paths.sweep / "beta2-0.9").exists()
    assert len(sweep_rows(cfg)) == 3
