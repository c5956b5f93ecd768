"""The whole pipeline on the smoke params: notebooks 01 -> 06 through papermill, then checks on what
each stage recorded (counts consistent across stages, every composition case present, a summary
row for every model, plots written), a rerun that skips finished stages, and a failing stage that
names its cell."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import scrapbook as sb

from dualdistill.config import load_config
from dualdistill.paths import RunPaths
from dualdistill.runner import STAGES, StageFailed, run_pipeline
from dualdistill.store import read_jsonl
from tests.conftest import REPO

SMOKE = REPO / "params" / "smoke.yaml"
MODELS = ["S0", "text_only", "tool_only", "S1", "S2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    overrides = {"output_dir": str(out)}
    results = run_pipeline(SMOKE, overrides, progress=False)
    return load_config(SMOKE, overrides), results


@pytest.mark.slow
def test_every_stage_ran(smoke_run):
    cfg, results = smoke_run
    assert [r.stage for r in results] == list(STAGES) and all(r.status == "ran" for r in results)
    paths = RunPaths.of(cfg)
    for name in STAGES.values():
        assert (paths.notebooks / name).exists()


@pytest.mark.slow
def test_counts_consistent_across_stages(smoke_run):
    cfg, _ = smoke_run
    paths = RunPaths.of(cfg)
    nb = {k: sb.read_notebook(str(paths.notebooks / v)).scraps for k, v in STAGES.items()}
    n_problems = nb["01"]["n_problems"].data
    assert n_problems == cfg.world.n_train
    rollouts = [r for r in read_jsonl(paths.teacher_rollouts) if r["status"] == "ok"]
    assert Counter(r["role"] for r in rollouts) == {"first": n_problems, "second": n_problems}
    t1 = read_jsonl(paths.t1)
    assert nb["02"]["n_t1"].data == len(t1) and 0 < len(t1) <= n_problems
    cases = Counter(e["case"] for e in t1)
    assert set(cases) == {"01", "11", "10"}, cases  # (0,0) is dropped, the three others all occur
    assert {e["first"] for e in t1} == {"text", "agent"}
    for name in MODELS:
        assert (paths.model(name) / "config.json").exists(), name
    samples = read_jsonl(paths.sd_samples)
    n_sd = len({s["problem"]["id"] for s in samples})
    assert len(samples) == n_sd * cfg.self_distill.k
    assert nb["04"]["selection_counts"].data["eligible"] <= n_sd


@pytest.mark.slow
def test_summary_rows_for_every_model(smoke_run):
    cfg, _ = smoke_run
    summary = json.loads(RunPaths.of(cfg).summary.read_text())
    rows = summary["eval"]
    n_test = cfg.world.n_test
    for model in MODELS:
        all_rows = [r for r in rows if r["model"] == model and r["subset"] == "all"]
        assert len(all_rows) == 1, model
        row = all_rows[0]
        assert row["n_problems"] == n_test and row["n_samples"] == n_test * cfg.eval.samples
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["tool_use_rate"] <= 1.0
        assert {r["subset"] for r in rows if r["model"] == model} >= {"all", "computation", "insight"}


@pytest.mark.slow
def test_plots_and_report_written(smoke_run):
    cfg, _ = smoke_run
    paths = RunPaths.of(cfg)
    plots = {p.stem for p in paths.plots.glob("*.png")}
    assert {"accuracy", "tool_use", "composition", "gbar_hist", "selection_sweep"} <= plots
    report = (paths.report / "README.md").read_text()
    assert "## Results" in report and "![accuracy]" in report


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_failure_names_the_cell(smoke_run):
    cfg, _ = smoke_run
    overrides = {"output_dir": cfg.output_dir}
    again = run_pipeline(SMOKE, overrides, progress=False)
    assert all(r.status == "skipped" for r in again)
    # a stage that breaks: evaluating a model nobody trained stops the run with cell and error named
    with pytest.raises(StageFailed, match=r"stage 05 .* failed in cell \d+: MissingModelError"):
        run_pipeline(SMOKE, {**overrides, "eval.models": ["S9"]}, only=["05"], progress=False)
