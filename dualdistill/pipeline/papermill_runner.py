"""Run the pipeline: notebooks 01 -> 06 executed by papermill with one params file.

    dualdistill run params/demo.yaml            # everything, skipping finished stages
    dualdistill run params/demo.yaml --from 03  # redo 03 and what follows
    dualdistill run params/demo.yaml --quiet    # no progress lines

Executed notebooks go to ``outputs/<run>/notebooks/``. A stage is finished when its marker
``outputs/<run>/stages/<NN>.done`` holds the hash of the config it ran with; a changed config
reruns it (each stage is itself resumable, so a rerun only does missing work). What each stage does
is streamed to the terminal as it happens: the notebook kernels run with ``DUALDISTILL_PROGRESS=lines``
(``dualdistill.common.progress``), so progress bars and logs inside the cells become periodic lines on
stderr, which papermill passes through (what cells print to stdout stays in the executed notebook). A failing notebook stops the run with the stage, the cell
and the error named.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdistill.artifacts.ledger import what_ran
from dualdistill.artifacts.paths import RunPaths
from dualdistill.artifacts.stage_table import STAGES, get_stage
from dualdistill.common import progress as progress_lines
from dualdistill.common.failures import IncompleteStage
from dualdistill.common.repository import REPO_ROOT
from dualdistill.common.store import write_atomic, write_json
from dualdistill.config import RunConfig, load_config

log = logging.getLogger(__name__)

REPO = REPO_ROOT
NOTEBOOK_DIR = REPO / "notebooks"


class StageFailed(RuntimeError):
    """A notebook raised; the message names the stage, the cell and the error. ``incomplete``: the
    error was the stage's :class:`~dualdistill.common.failures.IncompleteStage` (failed records)."""

    def __init__(self, message: str, *, incomplete: bool = False) -> None:
        super().__init__(message)
        self.incomplete = incomplete


@dataclass
class StageResult:
    stage: str
    notebook: Path
    status: str  # "ran" | "skipped"
    seconds: float


def _marker(paths: RunPaths, stage: str) -> Path:
    return paths.stage_markers / f"{stage}.done"


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
    return (f"stage {stage} ({get_stage(stage).notebook}) failed in {where}: {ename}: {evalue}\n"
            f"  executed notebook: {output}")


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], *, kernel: str = "python3",
                     progress: bool = True) -> None:
    """Execute one notebook with papermill, cwd = the repository root. With ``progress`` the cells'
    stderr (progress lines, logs, warnings) streams to this process's stderr as it is produced."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    old = os.environ.get(progress_lines.MODE_ENV)
    os.environ[progress_lines.MODE_ENV] = "lines" if progress else "off"  # the kernel inherits it
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(REPO), kernel_name=kernel,
            progress_bar=False, log_output=False, request_save_on_cell_execute=True,
            stderr_file=sys.stderr if progress else None,
        )
    finally:
        if old is None:
            os.environ.pop(progress_lines.MODE_ENV, None)
        else:
            os.environ[progress_lines.MODE_ENV] = old


def selected_stages(from_stage: str | None = None, only: list[str] | None = None) -> list[str]:
    numbers = [s.number for s in STAGES]
    for s in [from_stage, *(only or [])]:
        if s is not None:
            get_stage(s)  # unknown stages are an error naming the known ones
    stages = numbers
    if from_stage:
        stages = stages[stages.index(get_stage(from_stage).number):]
    if only:
        wanted = {get_stage(s).number for s in only}
        stages = [s for s in stages if s in wanted]
    return stages


def run_pipeline(params: str | Path, overrides: dict[str, Any] | None = None, *, from_stage: str | None = None,
                 only: list[str] | None = None, kernel: str = "python3", progress: bool = True,
                 redo: bool = True) -> list[StageResult]:
    """Execute the selected notebooks in order; finished stages are skipped unless ``from_stage``
    or ``only`` names them (with ``redo=False`` a finished stage is skipped even then)."""
    overrides = dict(overrides or {})
    cfg: RunConfig = load_config(params, overrides)
    paths = RunPaths.of(cfg)
    cfg.save(paths.root / "config.yaml")
    cfg_hash = cfg.hash()
    forced = set(selected_stages(from_stage, None)) if from_stage else set(selected_stages(None, only) if only else [])
    if not redo:
        forced = set()
    parameters = {"params": str(Path(params).resolve()), "overrides": overrides}
    results = []
    t_run = time.monotonic()
    for stage in selected_stages(from_stage, only):
        info = get_stage(stage)
        output = paths.notebooks / info.notebook
        if stage not in forced and _is_done(paths, stage, cfg_hash):
            log.info("stage %s already finished with this config: skipped", stage)
            if progress:
                progress_lines.say(f"== stage {stage} · {info.title}: finished earlier with this config, skipped")
            results.append(StageResult(stage, output, "skipped", 0.0))
            continue
        _marker(paths, stage).unlink(missing_ok=True)
        if progress:
            progress_lines.say(f"== stage {stage} · {info.title} · notebooks/{info.notebook}")
        start = time.monotonic()
        try:
            execute_notebook(NOTEBOOK_DIR / info.notebook, output, parameters, kernel=kernel, progress=progress)
        except Exception as err:  # papermill.PapermillExecutionError and kernel failures
            incomplete = getattr(err, "ename", None) == IncompleteStage.__name__
            raise StageFailed(_failure_message(stage, output, err), incomplete=incomplete) from err
        seconds = time.monotonic() - start
        write_json(_marker(paths, stage), {"config_hash": cfg_hash, "seconds": round(seconds, 1),
                                           "finished": time.time()})
        if progress:
            progress_lines.say(f"== stage {stage} finished in {progress_lines.duration(seconds)}")
        results.append(StageResult(stage, output, "ran", seconds))
    write_report_index(cfg, results)
    if progress:
        progress_lines.say(f"== run {cfg.run_name}: {len(results)} stages in {progress_lines.duration(time.monotonic() - t_run)}"
                           f" · report: {paths.report / 'README.md'}")
    return results


def write_report_index(cfg: RunConfig, results: list[StageResult]) -> Path:
    """``outputs/<run>/report/README.md``: the results table, the plots and the stage timings."""
    paths = RunPaths.of(cfg)
    lines = [f"# Run `{cfg.run_name}`", "", f"Params: `{cfg.source}` (config hash `{cfg.hash()}`)", ""]
    table = paths.report / "results.md"
    if table.exists():
        lines += ["## Results", "", table.read_text().strip(), ""]
    plots = sorted(paths.plots.glob("*.png")) if paths.plots.exists() else []
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](../plots/{p.name})" for p in plots] + [""]
    lines += ["## Stages", "", "| stage | notebook | status | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.stage} | `{r.notebook.name}` | {r.status} | {r.seconds:.0f} |" for r in results]
    ran = what_ran(cfg)
    if ran:
        lines += ["", "## What ran", "", f"From `{paths.ledger}` (the latest entry per stage and role).", ""]
        lines += ran_table(ran)
    return write_atomic(paths.report / "README.md", "\n".join(lines) + "\n")


def ran_table(entries: list[dict[str, Any]]) -> list[str]:
    """The ledger as a markdown table: stage, role, backend, what it ran on, what it did."""
    rows = ["| stage | role | backend | on | details |", "|---|---|---|---|---|"]
    for e in entries:
        on, details = _ran_cells(e)
        rows.append(f"| {e['stage']} | {e['role']} | `{e['backend']}` | {on} | {details} |")
    return rows


def _ran_cells(e: dict[str, Any]) -> tuple[str, str]:
    details: list[str] = []
    if e["backend"].startswith("sft-"):
        q = e.get("quantization") or {}
        if q:
            details.append(f"{q.get('quant_type')} 4-bit ({q.get('linear4bit_layers')} Linear4bit layers, double quant "
                           f"{q.get('double_quant')})")
        details.append(f"{e.get('steps')} steps, {e.get('kept')} examples kept, {e.get('tokens')} tokens "
                       f"({e.get('loss_tokens')} with loss), {e.get('seconds')} s on {e.get('device')}")
        on = f"`{e.get('base_model')}` → `{e.get('model_dir')}`"
    else:
        chat = e.get("chat") or {}
        model = e.get("model") or chat.get("model")
        on = f"`{model}`" if model else "—"
        if e.get("base_url") or chat.get("base_url"):
            on += f" at {e.get('base_url') or chat.get('base_url')}"
        if "fields" in e:
            details.append(f"fields {', '.join(e['fields'])} from {e.get('source')}")
        served = e.get("served")
        if served:
            details.append(f"server started by the run: `{' '.join(map(str, served.get('command') or []))}` "
                           f"(up in {served.get('startup_seconds')} s)")
        if e.get("vllm_version"):
            details.append(f"vLLM {e['vllm_version']}, dtype {e.get('dtype')}, engine {e.get('engine')}")
        details.append(f"{e.get('trajectories')} trajectories")
    if e.get("tokenizer_class"):
        details.append(f"tokenizer {e['tokenizer_class']} ({e.get('tokenizer_size')} tokens)")
    return on, "; ".join(details).replace("|", "\\|")
