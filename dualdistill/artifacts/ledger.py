"""What a run did: each stage's key figures (``metrics.json``) and the ledger of what ran (``report/ran.jsonl``).

    write_metrics(cfg, "03", summary)                     # beside the stage's outputs
    record_ran(cfg, "04", "sample:S1", policy.describe())  # one ledger line per policy or SFT run
    what_ran(cfg)                                         # the latest entry per stage and role
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dualdistill.artifacts.paths import RunPaths, require
from dualdistill.common.store import JsonlStore, read_json, write_json
from dualdistill.config import RunConfig


def write_metrics(cfg: RunConfig, stage: str, metrics: dict[str, Any]) -> Path:
    """A stage's key figures, ``metrics.json`` beside its outputs (notebooks show them, tests read them)."""
    return write_json(RunPaths.of(cfg).metrics(stage), metrics)


def read_metrics(cfg: RunConfig, stage: str) -> dict[str, Any]:
    return read_json(require(stage, RunPaths.of(cfg).metrics(stage), "its metrics.json"))


def record_ran(cfg: RunConfig, stage: str, role: str, info: dict[str, Any]) -> None:
    """Append what stage ``stage`` ran for ``role`` (a policy's ``describe()`` plus counts, an SFT run's
    summary) to the run's ledger, ``report/ran.jsonl``. ``info`` must name its ``backend``."""
    if "backend" not in info:
        raise ValueError(f"record_ran({stage!r}, {role!r}): info must name its backend")
    JsonlStore(RunPaths.of(cfg).ledger).append({"key": f"{stage}|{role}", "stage": stage, "role": role,
                                                "config_hash": cfg.hash(), "time": round(time.time(), 1), **info})


def what_ran(cfg: RunConfig) -> list[dict[str, Any]]:
    """The ledger's latest entry per stage and role, in stage order (empty before anything ran)."""
    entries = JsonlStore(RunPaths.of(cfg).ledger).latest().values()
    return sorted(entries, key=lambda e: (e["stage"], e["role"]))

