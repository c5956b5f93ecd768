"""Sweeps: stages 04 → 05 for every point of a grid of config fields, reusing S1 and its samples.

    dualdistill sweep params/demo.yaml --grid self_distill.beta1=0,0.5 self_distill.beta2=0.5,0.9,1.0
    dualdistill sweep params/smoke.yaml --grid self_distill.beta2=0.5,1.0 --set eval.samples=1

The base run (``outputs/<run>/``, made by ``dualdistill run``) has S1 and S1's self-distillation
samples; every grid point (the cartesian product of the ``--grid`` values, in order) is a run of its
own, ``outputs/<run>/sweep/<point>/`` (``output_dir`` = ``outputs/<run>/sweep``, ``run_name`` = the
point's name, e.g. ``beta1-0_beta2-0.9``), in which notebooks 04 and 05 are executed with papermill
(``runner.run_pipeline``): one executed notebook per stage under ``<point>/notebooks/``. Before it
runs, the point gets from the base run, as symbolic links, what stages 01-03 made and stage 04 only
reads — ``models/tiny_base`` (the tokenizer), ``models/S1``, ``rollouts/teacher_rollouts.jsonl``
(the text-teacher solutions) and ``t1/examples.jsonl`` (replay) — and a *copy* of
``self_distill/samples.jsonl``: S1's samples are reused (their cache key leaves β1, β2, K and the S2
settings out, ``artifacts.samples_hash``), and a field that changes how S1 is sampled draws new
samples into the point's copy, never into the base's file. So a point trains its own S2
(``<point>/models/S2``) and evaluates only S2; S1's evaluation records are the base run's.

A field that would change S1 itself (the world, teachers, composition, SFT: ``artifacts.s1_hash``)
is refused: such a grid needs ``dualdistill run`` per value. A point whose config equals the base
run's (apart from where it lives) *is* the base run: its row is read from the base's S2, nothing is
retrained. Invalid points (e.g. β1 > β2) are skipped with a note.

Results: one row per point in ``outputs/<run>/sweep/results.jsonl`` (the point's fields and values,
T2's size, S2's accuracy and tool use per subset beside S1's, and S2 − S1 with the standard error of
the paired per-problem differences, ``metrics.paired_difference``), ``sweep/results.md`` and
``sweep/sweep.png`` (:func:`plot_sweep`; stage 06 draws the same figure into ``plots/sweep.png``).
Resumable: a point with a row for its config is skipped; a point cut short resumes inside its stages
(samples, SFT and evaluation records are all resumable).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dualdistill.artifacts.current import eval_records, sweep_rows
from dualdistill.artifacts.identity import composition_hash, rollout_hash, s1_hash
from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import RunPaths, require, require_model
from dualdistill.common import progress as progress_lines
from dualdistill.common.store import JsonlStore, write_atomic
from dualdistill.config import ConfigError, RunConfig, load_config, parse_override
from dualdistill.pipeline.papermill_runner import run_pipeline
from dualdistill.report.figures import plot_sweep
from dualdistill.report.metrics import latest_per_sample, paired_difference, paired_rows, summarize
from dualdistill.report.tables import point_value, sweep_table

log = logging.getLogger(__name__)

STAGES = ("04", "05")
LINKED = ("models/tiny_base", "models/S1", "rollouts/teacher_rollouts.jsonl", "t1/examples.jsonl")
COPIED = ("self_distill/samples.jsonl",)
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


# --- the grid -------------------------------------------------------------------------------------
def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["self_distill.beta1=0,0.5", ...]`` → ``{"self_distill.beta1": [0, 0.5], ...}`` (each value
    read as YAML, like ``--set``)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like section.field=value1,value2")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key in grid:
            raise ConfigError(f"--grid names {key} twice")
        values = [parse_override(f"{key}={v}")[1] for v in raw.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {key} has no values")
        grid[key] = values
    if not grid:
        raise ConfigError("--grid needs at least one field=values")
    return grid


def point_name(values: dict[str, Any]) -> str:
    """``beta1-0_beta2-0.9``: each field by its last part (the whole dotted path where two fields
    share it) and its value; characters a run name cannot hold become ``-``."""
    leaves = [k.rsplit(".", 1)[-1] for k in values]
    keys = leaves if len(set(leaves)) == len(leaves) else list(values)
    return "_".join(_NAME_RE.sub("-", f"{k}-{point_value(v)}") for k, v in zip(keys, values.values(), strict=True))


@dataclass
class Point:
    name: str
    values: dict[str, Any]
    overrides: dict[str, Any]  # what the point's notebooks get (the base's --set, the values, where it lives)
    cfg: RunConfig
    base: bool = False  # the point's config is the base run's: the base run is the point
    note: str = ""
    seconds: float = 0.0
    notebooks: list[str] = field(default_factory=list)


def _eval_models_s2(cfg: RunConfig) -> list[Any]:
    """The evaluated models of a point: S2 only (its entry of the base's list, if it has one)."""
    for m in cfg.eval.models:
        if (m if isinstance(m, str) else m.name) == "S2":
            return [m if isinstance(m, str) else m.model_dump(mode="json", exclude_none=True)]
    return ["S2"]


def plan(params: str | Path, overrides: dict[str, Any], grid: dict[str, list[Any]]
         ) -> tuple[RunConfig, list[Point], list[tuple[dict[str, Any], str]]]:
    """The base config, the valid points and the invalid ones (values, why)."""
    base = load_config(params, overrides)
    sweep_dir = str(RunPaths.of(base).sweep)
    points, invalid = [], []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        name = point_name(values)
        try:
            same_place = load_config(params, {**overrides, **values})
        except ConfigError as err:
            invalid.append((values, str(err).split(": ", 1)[-1]))
            continue
        where = {"output_dir": sweep_dir, "run_name": name, "eval.models": _eval_models_s2(base)}
        point_overrides = {**overrides, **values, **where}
        cfg = load_config(params, point_overrides)
        for what, fn in (("S1", s1_hash), ("the teacher rollouts", rollout_hash), ("T1", composition_hash)):
            if fn(cfg) != fn(base):
                raise ConfigError(f"--grid {', '.join(values)}: {values} changes {what} ({fn.__name__}); a sweep "
                                  "reuses the base run's S1 and its samples: sweep only fields of stages 04-05 "
                                  "(self_distill.*, eval.*), or run `dualdistill run` for each value")
        points.append(Point(name, values, point_overrides, cfg, base=same_place.hash() == base.hash()))
    if len({p.name for p in points}) != len(points):
        raise ConfigError(f"--grid gives two points the same name: {[p.name for p in points]}")
    return base, points, invalid


# --- one point --------------------------------------------------------------------------------------
def link_base(base: RunConfig, cfg: RunConfig) -> None:
    """Give the point's run directory what it reuses from the base run (module docstring)."""
    src, dst = RunPaths.of(base).root, RunPaths.of(cfg).root
    require_model(base, "S1")
    require("04", src / COPIED[0], "S1's self-distillation samples (the sweep reuses them)")
    for rel in LINKED:
        target, link = src / rel, dst / rel
        if not target.exists():
            continue  # e.g. no T1 replay file in a released-T1 run: stage 04 says what it misses
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == target.resolve():
                continue
            raise FileExistsError(f"{link} exists and is not a link to the base run's {rel}")
        link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))
    for rel in COPIED:
        out = dst / rel
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, out)


def _subset_rows(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["benchmark"], r["budget"], r["subset"]): r for r in summarize(records)
            if not r["subset"].startswith("family:")}


def point_row(base: RunConfig, point: Point) -> dict[str, Any]:
    """The results row of a finished point (module docstring)."""
    cfg = base if point.base else point.cfg
    s2 = latest_per_sample(eval_records(cfg, ["S2"]))
    s1 = latest_per_sample(eval_records(base, ["S1"]))
    if not s2:
        raise ValueError(f"sweep point {point.name}: no evaluation records of S2 in {RunPaths.of(cfg).eval_dir}")
    m04 = read_metrics(cfg, "04")
    sft = m04.get("sft") or {}
    t2 = {"examples": m04.get("n_examples"), "verify": (m04.get("examples") or {}).get("verify"),
          "correct": (m04.get("examples") or {}).get("correct"), "replay_t1": sft.get("replay_t1_examples", 0),
          "eligible": (m04.get("counts") or {}).get("eligible")}
    rows2, rows1 = _subset_rows(s2), _subset_rows(s1)
    paired = {(r["benchmark"], r["budget"], r["subset"], r["metric"]): r for r in paired_rows(s1 + s2, [("S2", "S1")])}
    empty = paired_difference([], [])
    results = []
    for (bench, budget, subset), r2 in rows2.items():
        r1 = rows1.get((bench, budget, subset)) or {}
        acc, tool = (paired.get((bench, str(budget), subset, m), empty) for m in ("accuracy", "tool_use_rate"))
        results.append({"benchmark": bench, "budget": budget, "subset": subset, "n_problems": r2["n_problems"],
                        "n_samples": r2["n_samples"], "s2_accuracy": r2["accuracy"], "s2_tool_use": r2["tool_use_rate"],
                        "s1_accuracy": r1.get("accuracy"), "s1_tool_use": r1.get("tool_use_rate"),
                        "delta": acc["delta"], "se": acc["se"], "n_paired": acc["n_problems"],
                        "tool_delta": tool["delta"], "tool_se": tool["se"]})
    return {"key": point.name, "point": point.name, "values": point.values, "config_hash": cfg.hash(),
            "base": point.base, "run_dir": str(RunPaths.of(cfg).root), "notebooks": point.notebooks,
            "seconds": round(point.seconds, 1), "t2": t2, "results": results, "finished": time.time()}


def run_point(base: RunConfig, point: Point, params: str | Path, *, progress: bool = True) -> None:
    """Stages 04 and 05 of one point through their notebooks (resumable)."""
    if point.base:
        paths = RunPaths.of(base)
        require("05", paths.eval_records("S2"), "the base run's evaluation of S2 (this point is the base run)")
        point.notebooks = [str(paths.notebooks / n) for n in ("04_self_distillation.ipynb", "05_evaluation.ipynb")]
        return
    link_base(base, point.cfg)
    t0 = time.monotonic()
    results = run_pipeline(params, point.overrides, only=list(STAGES), progress=progress, redo=False)
    point.seconds = time.monotonic() - t0
    point.notebooks = [str(r.notebook) for r in results]


# --- the sweep ----------------------------------------------------------------------------------------
def run_sweep(params: str | Path, grid: dict[str, list[Any]], overrides: dict[str, Any] | None = None, *,
              progress: bool = True) -> dict[str, Any]:
    """Every point of ``grid`` (module docstring); returns the rows, what was skipped and the outputs."""
    overrides = dict(overrides or {})
    base, points, invalid = plan(params, overrides, grid)
    paths = RunPaths.of(base)
    store = JsonlStore(paths.sweep_results)
    done = {r["point"]: r for r in sweep_rows(base)}
    say = progress_lines.say if progress else (lambda _msg: None)
    for values, why in invalid:
        say(f"== sweep: {point_name(values)} skipped, not a valid config: {why}")
    t0 = time.monotonic()
    status: dict[str, str] = {}
    for i, point in enumerate(points, 1):
        head = f"== sweep point {i}/{len(points)} · {point.name}"
        if point.name in done and done[point.name].get("config_hash") == (base if point.base else point.cfg).hash():
            say(f"{head}: finished earlier, skipped")
            status[point.name] = "skipped"
            continue
        say(f"{head}" + (": the base run's config, its S2 is reused" if point.base else f" → {RunPaths.of(point.cfg).root}"))
        run_point(base, point, params, progress=progress)
        row = point_row(base, point)
        store.append(row)
        status[point.name] = "base" if point.base else "ran"
        overall = next((r for r in row["results"] if r["subset"] == "all"), None)
        if overall and overall["delta"] is not None:
            say(f"{head}: S2 {100 * overall['s2_accuracy']:.1f} vs S1 {100 * overall['s1_accuracy']:.1f} "
                f"(S2 − S1 {100 * overall['delta']:+.1f} ± {100 * overall['se']:.1f}), T2 {row['t2']['examples']} "
                f"examples, {progress_lines.duration(point.seconds)}")
    rows = [r for r in sweep_rows(base) if r["point"] in {p.name for p in points}]
    outputs = write_outputs(base, rows, list(grid))
    say(f"== sweep: {len(points)} points in {progress_lines.duration(time.monotonic() - t0)} · {outputs['results_md']}")
    return {"rows": rows, "status": status, "invalid": [v for v, _ in invalid], **outputs}


def write_outputs(base: RunConfig, rows: list[dict[str, Any]], fields: list[str]) -> dict[str, str]:
    """``sweep/results.md`` (the table) and ``sweep/sweep.png`` (the figure) of these rows."""
    paths = RunPaths.of(base)
    fig = plot_sweep(rows, paths.sweep / "sweep.png", fields=fields)
    import matplotlib.pyplot as plt

    plt.close(fig)
    md = ["# Sweep", "", f"Base run `{base.run_name}`: S1 and its samples reused; one S2 per point.", "",
          sweep_table(rows), "", "![sweep](sweep.png)", ""]
    write_atomic(paths.sweep / "results.md", "\n".join(md))
    return {"results": str(paths.sweep_results), "results_md": str(paths.sweep / "results.md"),
            "plot": str(paths.sweep / "sweep.png")}






# --- the figure ---------------------------------------------------------------------------------------


