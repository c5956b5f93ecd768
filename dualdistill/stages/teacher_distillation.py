"""Stage 03 — teacher distillation: SFT the student on T1 (Algorithm 1, step 4), plus S0 and baselines.

    python -m dualdistill.stages.teacher_distillation params/smoke.yaml [--set sft.max_steps=20 ...]
    dualdistill distill params/smoke.yaml                  # the same call: run(cfg)
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml \
        -m dualdistill.stages.teacher_distillation params/paper-7b-full.yaml

Models trained here (each a plain model in ``RunPaths.model(name)``, work dir with checkpoints,
loss.csv and summary.json in ``RunPaths.checkpoints(name)``; a rerun with the same data and
settings skips it, an interrupted one resumes from its last checkpoint):

- ``S0`` (embedded world only, ``student.model == "tiny"``): the locally built tiny base
  (``RunPaths.tiny_base``, stage 01) fine-tuned on correct text-teacher traces of the stage-0 split
  (``RunPaths.stage0_rollouts``) with ``student.stage0_sft`` (default: ``sft``) — a text reasoner to
  start from, as R1-Distill-Qwen-7B is in the paper. For a hub student S0 is the model itself.
- ``S1``: S0 fine-tuned on T1 with ``sft``.
- one model per ``baselines`` entry: S0 fine-tuned on that baseline's data with ``sft``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from dualdistill.artifacts.current import stage0_records, t1_examples, training_examples
from dualdistill.artifacts.ledger import record_ran
from dualdistill.artifacts.paths import RunPaths, model_path, require
from dualdistill.common.store import record_key
from dualdistill.config import RunConfig
from dualdistill.formats import formatting
from dualdistill.formats.records import TrainingExample
from dualdistill.stages.entry import stage
from dualdistill.training.sft import ran_info, train_sft

log = logging.getLogger(__name__)


def stage0_examples(records: list[dict[str, Any]], prompt_style: str = "r1") -> list[dict[str, Any]]:
    """Training examples (source ``stage0``) from teacher rollout records: correct, ok,
    well-formed text-teacher trajectories, with the code-mode training prompt."""
    out, skipped = [], 0
    for i, rec in enumerate(records):
        if rec.get("teacher", "text") != "text" or rec.get("status", "ok") != "ok" or not rec.get("correct", True):
            continue
        try:
            prob, traj = rec["problem"], rec["trajectory"]
            segments = formatting.as_segments(traj)
            pid, text = prob["id"], prob["problem"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"stage-0 record {i} ({rec.get('key')!r}): malformed ({err!r})") from None
        if not formatting.is_valid(segments):
            skipped += 1
            continue
        out.append(TrainingExample.build(
            prob, key=record_key(pid, rec.get("role", "first"), rec.get("sample", 0), "stage0"),
            prompt=formatting.build_prompt(text, code=True, style=prompt_style), segments=segments,
            source="stage0", first="text",
        ).to_dict())
    if skipped:
        log.warning("stage 0: skipped %d text-teacher traces with an invalid format", skipped)
    return out


def training_jobs(cfg: RunConfig) -> list[dict[str, Any]]:
    """The SFT runs of this stage, in order: name, where its examples come from, base, SFT settings."""
    paths = RunPaths.of(cfg)
    jobs = []
    if cfg.student.model == "tiny":
        jobs.append({"name": "S0", "data": paths.stage0_rollouts, "base": str(paths.tiny_base),
                     "sft": cfg.student.stage0_sft or cfg.sft})
    jobs.append({"name": "S1", "data": paths.t1, "base": model_path(cfg, "S0"), "sft": cfg.sft})
    for name in sorted(cfg.baselines):
        jobs.append({"name": name, "data": paths.baseline_data(name), "base": model_path(cfg, "S0"), "sft": cfg.sft})
    return jobs


def job_examples(cfg: RunConfig, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The training examples of one job (a missing input names the stage that makes it)."""
    if job["name"] == "S0":
        require("01", RunPaths.of(cfg).tiny_base, "the tiny student")
        examples = stage0_examples(stage0_records(cfg), cfg.student.prompt_style)
        if not examples:
            raise ValueError(f"{job['data']}: no correct text-teacher trace to build S0 from")
        return examples
    if job["name"] == "S1":
        return t1_examples(cfg)
    return training_examples(Path(job["data"]), "02", f"baseline {job['name']!r} data")


@stage("03")
def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stage 03: train S0 (embedded world), S1 and the baselines. Every input is checked before the
    first training starts. Returns a per-model summary (steps, final loss, examples, dropped, seconds,
    whether it was skipped as already trained, ...)."""
    jobs = [(job, job_examples(cfg, job)) for job in training_jobs(cfg)]
    paths = RunPaths.of(cfg)
    models: dict[str, Any] = {}
    for job, examples in jobs:
        log.info("SFT %s: %d examples from %s on %s (%s)", job["name"], len(examples), job["data"],
                 job["base"], job["sft"].method)
        result = train_sft(examples, job["base"], paths.checkpoints(job["name"]), job["sft"],
                           model_dir=paths.model(job["name"]), resume=True, device=cfg.device, progress=progress,
                           desc=f"SFT {job['name']}")
        models[job["name"]] = {"data": str(job["data"]), **result}
        if not result.get("skipped"):
            record_ran(cfg, "03", f"sft:{job['name']}", ran_info(result))
    cfg.save(paths.root / "checkpoints" / "config.yaml")
    return {"models": models, "model_dirs": {n: model_path(cfg, n) for n in ["S0", *models]}}


def mask_example(cfg: RunConfig) -> dict[str, Any]:
    """A T1 example worth looking at in colour: a fixed wrong first attempt with code and executor
    output (case 01), else any example with executor output, else the first one."""
    t1 = t1_examples(cfg)

    def kinds(ex: dict[str, Any]) -> set[str]:
        return {s.get("kind") for s in ex.get("segments", [])}

    ranked = sorted(t1, key=lambda ex: (not ex.get("mask_until_first_transition"), "executor" not in kinds(ex),
                                         "transition" not in kinds(ex), len(json.dumps(ex["segments"]))))
    return ranked[0]


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per trained model: the figures the notebook shows. ``status`` comes first: a model
    already trained on the same data with the same settings is reused, and its training time is
    that earlier run's (``trained in (s)``), not time spent now."""
    cols = ["method", "examples", "kept", "dropped", "truncated", "steps", "epochs", "first_loss", "final_loss",
            "tokens_trained", "seconds", "tokens_per_s", "peak_gpu_gb"]
    rows = {}
    for name, r in summary["models"].items():
        status = "reused: trained earlier, same data and settings" if r.get("skipped") else "trained now"
        rows[name] = {"status": status, **{c: r.get(c) for c in cols}}
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns={"seconds": "trained in (s)"})


def loss_curves(cfg: RunConfig, names: list[str] | None = None) -> pd.DataFrame:
    """Long table (model, step, epoch, loss) from each model's ``loss.csv``."""
    paths = RunPaths.of(cfg)
    names = names or [j["name"] for j in training_jobs(cfg)]
    frames = []
    for name in names:
        f = paths.checkpoints(name) / "loss.csv"
        if f.is_file():
            df = pd.read_csv(f)
            frames.append(df.assign(model=name)[["model", "step", "epoch", "loss"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "step", "epoch", "loss"])


if __name__ == "__main__":
    from dualdistill.stages.entry import main

    raise SystemExit(main("03"))
