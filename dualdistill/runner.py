"""Run the pipeline: notebooks 01 -> 06 executed by papermill with one params file.

    dualdistill run params/demo.yaml            # everything, skipping finished stages
    dualdistill run params/demo.yaml --from 03  # redo 03 and what follows

Executed notebooks go to ``outputs/<run>/notebooks/``. A stage is finished when its marker
``outputs/<run>/stages/<NN>.done`` holds the hash of the config it ran with; a changed config
reruns it (each stage is itself resumable, so a rerun only does missing work). A failing notebook
stops the run with the stage, the cell and the error named.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdistill.config import RunConfig, load_config
from dualdistill.paths import RunPaths

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
STAGES: dict[str, str] = {
    "01": "01_teacher_rollouts.ipynb",
    "02": "02_compose_trajectories.ipynb",
    "03": "03_teacher_distillation_sft.ipynb",
    "04": "04_self_distillation.ipynb",
    "05": "05_evaluation.ipynb",
    "06": "06_analysis.ipynb",
}


class StageFailed(RuntimeError):
    """A notebook raised; the message names the stage, the cell and the error."""


@dataclass
class StageResult:
    stage: str
    notebook: Path
    status: str  # "ran" | "skipped"
    seconds: float


def _marker(paths: RunPaths, stage: str) -> Path:
    return paths.root / "stages" / f"{stage}.done"


def _is_done(paths: RunPaths, stage: str, cfg_hash: str) -> bool:
    marker = _marker(paths, stage)
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == cfg_hash
    except json.JSONDecodeError:
        return False


def _failure_message(stage: str, output: Path, err: Exception) -> str:
    cell = getattr(err, "cell_index", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {cell}" if cell is not None else "a cell"
    return f"stage {stage} ({STAGES[stage]}) failed in {where}: {ename}: {evalue}\n  executed notebook: {output}"


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], *, kernel: str = "python3",
                     progress: bool = True) -> None:
    """Execute one notebook with papermill, cwd = the repository root."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, cwd=str(REPO), kernel_name=kernel,
        progress_bar=progress, log_output=False, request_save_on_cell_execute=True,
    )


def selected_stages(from_stage: str | None = None, only: list[str] | None = None) -> list[str]:
    for s in [from_stage, *(only or [])]:
        if s is not None and s not in STAGES:
            raise ValueError(f"unknown stage {s!r}; stages are {', '.join(STAGES)}")
    stages = list(STAGES)
    if from_stage:
        stages = stages[stages.index(from_stage):]
    if only:
        stages = [s for s in stages if s in only]
    return stages


def run_pipeline(params: str | Path, overrides: dict[str, Any] | None = None, *, from_stage: str | None = None,
                 only: list[str] | None = None, kernel: str = "python3", progress: bool = True) -> list[StageResult]:
    """Execute the selected notebooks in order; finished stages are skipped unless ``from_stage``
    or ``only`` names them."""
    overrides = dict(overrides or {})
    cfg: RunConfig = load_config(params, overrides)
    paths = RunPaths.of(cfg)
    cfg.save(paths.root / "config.yaml")
    cfg_hash = cfg.hash()
    forced = set(selected_stages(from_stage, None)) if from_stage else set(only or [])
    parameters = {"params": str(Path(params).resolve()), "overrides": overrides}
    results = []
    for stage in selected_stages(from_stage, only):
        output = paths.notebooks / STAGES[stage]
        if stage not in forced and _is_done(paths, stage, cfg_hash):
            log.info("stage %s already finished with this config: skipped", stage)
            results.append(StageResult(stage, output, "skipped", 0.0))
            continue
        _marker(paths, stage).unlink(missing_ok=True)
        print(f"[dualdistill] stage {stage}: {STAGES[stage]}", flush=True)
        start = time.time()
        try:
            execute_notebook(NOTEBOOK_DIR / STAGES[stage], output, parameters, kernel=kernel, progress=progress)
        except Exception as err:  # papermill.PapermillExecutionError and kernel failures
            raise StageFailed(_failure_message(stage, output, err)) from err
        seconds = time.time() - start
        marker = _marker(paths, stage)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"config_hash": cfg_hash, "seconds": round(seconds, 1), "finished": time.time()}))
        results.append(StageResult(stage, output, "ran", seconds))
    write_report_index(cfg, results)
    return results


def write_report_index(cfg: RunConfig, results: list[StageResult]) -> Path:
    """``outputs/<run>/report/README.md``: the results table, the plots and the stage timings."""
    paths = RunPaths.of(cfg)
    paths.report.mkdir(parents=True, exist_ok=True)
    lines = [f"# Run `{cfg.run_name}`", "", f"Params: `{cfg.source}` (config hash `{cfg.hash()}`)", ""]
    table = paths.report / "results.md"
    if table.exists():
        lines += ["## Results", "", table.read_text().strip(), ""]
    plots = sorted(paths.plots.glob("*.png")) if paths.plots.exists() else []
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](../plots/{p.name})" for p in plots] + [""]
    lines += ["## Stages", "", "| stage | notebook | status | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.stage} | `{r.notebook.name}` | {r.status} | {r.seconds:.0f} |" for r in results]
    out = paths.report / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out
