"""Stage 02 — compose teacher rollouts into the teacher-distillation set T1 (Algorithm 1, steps 2–3).

    python -m dualdistill.stages.compose params/smoke.yaml [--set composition.balance=none ...]
    dualdistill compose params/smoke.yaml                  # the same call: run(cfg)

The rules (cases, transitions, balancing, baselines) are :mod:`dualdistill.algorithm.composition`;
this stage reads stage 01's teacher records, applies them and writes T1 (``t1/examples.jsonl``, its
official-format export ``t1/official.jsonl``, ``stats.csv``, ``dropped.jsonl``, the config) and the
baselines' data. ``cfg.composition.released`` replaces composition by the paper's released T1
(:func:`import_released`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from dualdistill.algorithm.composition import (
    balance,
    baseline_examples,
    baseline_pool,
    compose_all,
    composition_stats,
)
from dualdistill.artifacts.current import teacher_records
from dualdistill.artifacts.identity import composition_hash
from dualdistill.artifacts.ledger import write_metrics
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.hashing import hash_lines
from dualdistill.common.store import read_json, write_atomic, write_jsonl
from dualdistill.config import RunConfig
from dualdistill.data.official_data import export_official, released_examples
from dualdistill.stages.entry import stage

log = logging.getLogger(__name__)


# --- the stage ------------------------------------------------------------------------------------
@stage("02")
def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stage 02: compose, balance and write T1 (+ stats, dropped pairs, config) and the configured
    baselines' data, from stage 01's teacher records (failed rollouts included, to count them).

    Resumable: when the stage's ``metrics.json`` records the same config hash (composition,
    baselines, prompt style) and input hash (teacher records) and all outputs exist, nothing is redone.
    With ``composition.released`` T1 is the paper's released data instead (:func:`import_released`)."""
    if cfg.composition.released is not None:
        return import_released(cfg)
    return compose_records(cfg, teacher_records(cfg, with_failed=True))


def import_released(cfg: RunConfig) -> dict[str, Any]:
    """T1 = the paper's released data (``official_data.released_examples``), written where stage 02
    writes T1, with its official-format export and the stage's metrics (no balancing: it is the
    paper's final T1)."""
    paths = RunPaths.of(cfg)
    comp = cfg.composition
    t1, report = released_examples(comp.released, prompt_style=cfg.student.prompt_style,
                                   mask=comp.mask_before_transition != "never")
    if not t1:
        raise ValueError(f"released T1 {comp.released.path}: no row passed the official format check ({report})")
    dropped = [{"problem_id": f"released/{i}", "reason": "invalid_format", "error": "refused by the official format check"}
               for i in report["refused_rows"]]
    side = {"stats_csv": paths.t1_side("stats.csv"), "dropped": paths.t1_side("dropped.jsonl"),
            "config": paths.t1_side("config.yaml")}
    write_jsonl(paths.t1, t1)
    write_atomic(side["stats_csv"], composition_stats(t1, dropped).to_csv(index=False))
    write_jsonl(side["dropped"], dropped)  # the first refused rows (all are counted in "released")
    cfg.save(side["config"])
    summary = {
        "n_t1": len(t1), "released": report,
        "cases": dict(sorted(Counter(ex["case"] for ex in t1).items())),
        "first": dict(sorted(Counter(ex["first"] for ex in t1).items())),
        "masked_before_transition": sum(ex["mask_until_first_transition"] for ex in t1),
        "official_export": export_official(t1, paths.t1_official),
        "config_hash": composition_hash(cfg), "skipped": False,
        "paths": {"t1": str(paths.t1), "t1_official": str(paths.t1_official), **{k: str(v) for k, v in side.items()}},
    }
    write_metrics(cfg, "02", summary)
    return summary


def compose_records(cfg: RunConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The work of :func:`run` on given teacher records."""
    paths = RunPaths.of(cfg)
    side = {"stats_csv": paths.t1_side("stats.csv"), "dropped": paths.t1_side("dropped.jsonl"),
            "config": paths.t1_side("config.yaml")}
    config_hash = composition_hash(cfg)
    input_hash = hash_lines(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)
    metrics = paths.metrics("02")
    outputs = [paths.t1, paths.t1_official, metrics, *side.values(), *(paths.baseline_data(n) for n in cfg.baselines)]
    if all(p.is_file() for p in outputs):
        old = read_json(metrics)
        if old.get("config_hash") == config_hash and old.get("input_hash") == input_hash:
            log.info("compose: outputs at %s are up to date (config %s)", paths.t1.parent, config_hash)
            return {**old, "skipped": True}

    composed, dropped = compose_all(records, cfg.composition, cfg.student.prompt_style)
    t1, report = balance(composed, cfg.composition)
    dropped = dropped + report["dropped"]
    stats = composition_stats(t1, dropped)

    write_jsonl(paths.t1, t1)
    exported = export_official(t1, paths.t1_official)
    write_atomic(side["stats_csv"], stats.to_csv(index=False))
    write_jsonl(side["dropped"], dropped)
    cfg.save(side["config"])

    baselines = {}
    for name, teacher in sorted(cfg.baselines.items()):
        ex = baseline_examples(records, teacher, len(t1), cfg.composition.seed, name=name,
                               prompt_style=cfg.student.prompt_style, fill=cfg.composition.baseline_fill)
        available = len(baseline_pool(records, teacher, name))
        write_jsonl(paths.baseline_data(name), ex)
        cfg.save(paths.baseline_data(name).with_name("config.yaml"))
        baselines[name] = {"teacher": teacher, "n": len(ex), "requested": len(t1), "available": available}

    summary = {
        "n_t1": len(t1),
        "n_pairs": len(composed) + sum(1 for d in dropped if d["reason"] in ("both_wrong", "invalid_format")),
        "cases": dict(sorted(Counter(ex["case"] for ex in t1).items())),
        "first": dict(sorted(Counter(ex["first"] for ex in t1).items())),
        "subsets": dict(sorted(Counter(str(ex["subset"]) for ex in t1).items())),
        "masked_before_transition": sum(ex["mask_until_first_transition"] for ex in t1),
        "dropped": dict(sorted(Counter(d["reason"] for d in dropped).items())),
        "balance": {k: v for k, v in report.items() if k != "dropped"},
        "warnings": list(report["warnings"]),
        "official_export": exported,
        "baselines": baselines,
        "config_hash": config_hash,
        "input_hash": input_hash,
        "paths": {"t1": str(paths.t1), "t1_official": str(paths.t1_official), **{k: str(v) for k, v in side.items()},
                  **{f"baseline:{n}": str(paths.baseline_data(n)) for n in cfg.baselines}},
        "skipped": False,
    }
    write_metrics(cfg, "02", summary)  # also what a rerun compares its hashes with
    return summary


if __name__ == "__main__":
    from dualdistill.stages.entry import main

    raise SystemExit(main("02"))
