"""The current records of each stage: what a later stage, a notebook or a report reads.

    records = teacher_records(cfg)        # stage 01's rollouts under this config
    samples = self_distill_samples(cfg)   # stage 04's samples: this config, the first K, the problem set
    rows = eval_rows(cfg)                 # stage 05's metric rows

Stages meet only in files: a stage reads what an earlier one wrote through this module and never
imports the earlier stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualdistill.artifacts.identity import rollout_hash, samples_hash
from dualdistill.artifacts.paths import RunPaths, require
from dualdistill.common.store import JsonlStore, read_json, read_jsonl
from dualdistill.config import RunConfig
from dualdistill.data.loaders import train_problems
from dualdistill.formats.problem import Problem


def _current(path: Path, chash: str) -> list[dict[str, Any]]:
    """The latest record per key whose ``config_hash`` is ``chash``."""
    return [r for r in JsonlStore(path).latest().values() if r.get("config_hash", chash) == chash]


def teacher_records(cfg: RunConfig, *, with_failed: bool = False) -> list[dict[str, Any]]:
    """Stage 01's teacher rollout records of this config (latest per key); only ``ok`` ones unless
    ``with_failed`` (a pair lost to a failed rollout is then visible as such)."""
    path = require("01", RunPaths.of(cfg).teacher_rollouts, "teacher rollouts")
    records = _current(path, rollout_hash(cfg))
    return records if with_failed else [r for r in records if r.get("status") == "ok"]


def stage0_records(cfg: RunConfig) -> list[dict[str, Any]]:
    """Stage 01's text-teacher traces of the stage-0 split (embedded world), this config only."""
    path = require("01", RunPaths.of(cfg).stage0_rollouts, "stage-0 text-teacher traces")
    return _current(path, rollout_hash(cfg))


def training_examples(path: Path, stage: str, what: str) -> list[dict[str, Any]]:
    """A training set written by ``stage`` (T1, a baseline's data, T2): non-empty, or an error."""
    examples = read_jsonl(require(stage, path, what))
    if not examples:
        raise ValueError(f"{what} at {path} is empty: nothing to train on")
    return examples


def t1_examples(cfg: RunConfig) -> list[dict[str, Any]]:
    return training_examples(RunPaths.of(cfg).t1, "02", "T1")


def self_distill_problems(cfg: RunConfig) -> list[Problem]:
    """The problems of self-distillation: ``data.train`` without the near-duplicates of the test sets
    (``loaders.train_problems``, as for teacher rollouts), capped by ``self_distill.max_problems``."""
    problems, _ = train_problems(cfg.data, cfg.world)
    if not problems:
        raise ValueError("data.train is empty: self-distillation needs training problems")
    cap = cfg.self_distill.max_problems
    return problems[:cap] if cap else problems


def self_distill_samples(cfg: RunConfig, problems: list[Problem] | None = None) -> list[dict[str, Any]]:
    """Stage 04's current samples: this config's, the first K of each problem, of the current problem
    set; in problem order, then sample order. Stages 04 and 06 and notebook 04 read this one list."""
    problems = self_distill_problems(cfg) if problems is None else problems
    path = RunPaths.of(cfg).sd_samples
    chash, k = samples_hash(cfg), cfg.self_distill.k
    wanted = {p.id for p in problems}
    current: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in JsonlStore(path).latest().values():
        if rec.get("config_hash") != chash:
            continue
        pid, sample = rec["problem"]["id"], int(rec["sample"])
        if pid in wanted and sample < k:
            current[(pid, sample)] = rec
    return [current[(p.id, s)] for p in problems for s in range(k) if (p.id, s) in current]


def eval_records(cfg: RunConfig, models: list[str] | None = None) -> list[dict[str, Any]]:
    """Stage 05's sample records (of the named models, else all) under ``eval/``."""
    paths = RunPaths.of(cfg)
    files = [paths.eval_records(m) for m in models] if models else sorted(paths.eval_dir.glob("*.jsonl"))
    return [rec for f in files if f.is_file() for rec in read_jsonl(f)]


def eval_paired(cfg: RunConfig) -> list[dict[str, Any]]:
    """Stage 05's paired differences (``report/summary.json``, key ``paired``; [] before they existed)."""
    data = read_json(require("05", RunPaths.of(cfg).summary, "the evaluation summary"))
    return list(data.get("paired") or []) if isinstance(data, dict) else []


def eval_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """Stage 05's metric rows (``report/summary.json``, key ``eval``)."""
    path = require("05", RunPaths.of(cfg).summary, "the evaluation summary")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("eval"), list):
        raise ValueError(f"{path}: expected an object with an 'eval' list")
    return data["eval"]


def sweep_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """The rows of ``dualdistill sweep`` (one per grid point, the latest of each); [] without a sweep."""
    path = RunPaths.of(cfg).sweep_results
    if not path.is_file():
        return []
    return list(JsonlStore(path).latest().values())

