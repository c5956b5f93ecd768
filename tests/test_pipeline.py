"""The whole pipeline on the smoke params: notebooks 01 -> 06 through papermill, then checks on what
each stage recorded (its metrics.json: counts consistent across stages, every composition case
present, a summary row for every model, plots written), a rerun that skips finished stages, progress
streamed to the terminal, and a failing stage that names its cell. The smoke run is the session's
(``smoke_run`` in conftest.py; the JupyterLab browser test works on the same outputs)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import RunPaths
from dualdistill.artifacts.stage_table import STAGES
from dualdistill.common.store import read_jsonl
from dualdistill.pipeline.papermill_runner import StageFailed, run_pipeline
from tests.conftest import SMOKE

MODELS = ["S0", "text_only", "tool_only", "S1", "S2"]


@pytest.mark.slow
def test_every_stage_ran_and_streamed_its_progress(smoke_run):
    cfg, results, shown = smoke_run
    assert [r.stage for r in results] == [s.number for s in STAGES] and all(r.status == "ran" for r in results)
    paths = RunPaths.of(cfg)
    for s in STAGES:
        assert (paths.notebooks / s.notebook).exists()
        assert paths.metrics(s.number).is_file()
        assert f"== stage {s.number} · {s.title}" in shown and f"[stage {s.number}] done in" in shown
        assert re.search(rf"== stage {s.number} finished in \d+(s|m\d\ds)", shown)
    # the progress inside the cells reaches the terminal as lines with counts and elapsed time
    assert re.search(r"\[teacher rollouts\] \d+/\d+ trajectories \(100%\) · \d+s elapsed", shown)
    assert re.search(r"\[SFT S1\] \d+/\d+ steps \(100%\) · loss \d", shown)
    assert re.search(r"\[S1 samples\] \d+/\d+ trajectories", shown)
    assert re.search(r"\[S2/world_test/S\] \d+/\d+ trajectories", shown)


@pytest.mark.slow
def test_counts_consistent_across_stages(smoke_run):
    cfg, _, _ = smoke_run
    paths = RunPaths.of(cfg)
    m = {s.number: read_metrics(cfg, s.number) for s in STAGES}
    n_problems = m["01"]["teacher_rollouts"]["problems"]
    assert n_problems == cfg.world.n_train
    rollouts = [r for r in read_jsonl(paths.teacher_rollouts) if r["status"] == "ok"]
    assert Counter(r["role"] for r in rollouts) == {"first": n_problems, "second": n_problems}
    t1 = read_jsonl(paths.t1)
    assert m["02"]["n_t1"] == len(t1) and 0 < len(t1) <= n_problems
    cases = Counter(e["case"] for e in t1)
    assert set(cases) == {"01", "11", "10"}, cases  # (0,0) is dropped, the three others all occur
    assert {e["first"] for e in t1} == {"text", "agent"}
    for name in MODELS:
        assert (paths.model(name) / "config.json").exists(), name
    samples = read_jsonl(paths.sd_samples)
    n_sd = len({s["problem"]["id"] for s in samples})
    assert len(samples) == n_sd * cfg.self_distill.k
    assert m["04"]["counts"]["eligible"] <= n_sd
    assert m["06"]["metrics"]["gbar_hist"] == m["04"]["gbar_hist"]  # stages 04 and 06 count the same ḡ


@pytest.mark.slow
def test_summary_rows_for_every_model(smoke_run):
    cfg, _, _ = smoke_run
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
    cfg, _, _ = smoke_run
    paths = RunPaths.of(cfg)
    plots = {p.stem for p in paths.plots.glob("*.png")}
    assert {"accuracy", "tool_use", "composition", "gbar_hist", "selection_sweep"} <= plots
    report = (paths.report / "README.md").read_text()
    assert "## Results" in report and "![accuracy]" in report


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_failure_names_the_cell(smoke_run):
    cfg, _, _ = smoke_run
    overrides = {"output_dir": cfg.output_dir}
    again = run_pipeline(SMOKE, overrides, progress=False)
    assert all(r.status == "skipped" for r in again)
    # a stage that breaks: evaluating a model nobody trained stops the run with cell and error named
    with pytest.raises(StageFailed, match=r"stage 05 .* failed in cell \d+: FileNotFoundError"):
        run_pipeline(SMOKE, {**overrides, "eval.models": ["S9"]}, only=["05"], progress=False)
