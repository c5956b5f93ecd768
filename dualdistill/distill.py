"""Stage 03 — teacher distillation: SFT the student on T1 (Algorithm 1, step 4), plus S0 and baselines.

    python -m dualdistill.distill params/smoke.yaml [sft.max_steps=20 ...]

Models trained here (each a plain model in ``RunPaths.model(name)``, work dir with checkpoints,
loss.csv and summary.json in ``RunPaths.checkpoints(name)``; a rerun with the same data and
settings skips it, an interrupted one resumes from its last checkpoint):

- ``S0`` (embedded world only, ``student.model == "tiny"``): the locally built tiny base
  (``RunPaths.tiny_base``, stage 01) fine-tuned on correct text-teacher traces of the stage-0 split
  (``rollouts/stage0.jsonl``) with ``student.stage0_sft`` (default: ``sft``) — a text reasoner to
  start from, as R1-Distill-Qwen-7B is in the paper. For a hub student S0 is the model itself.
- ``S1``: S0 fine-tuned on T1 with ``sft``.
- one model per ``baselines`` entry: S0 fine-tuned on that baseline's data with ``sft``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dualdistill import formatting
from dualdistill.config import RunConfig, load_config, parse_override
from dualdistill.paths import RunPaths
from dualdistill.store import JsonlStore, read_jsonl, record_key

log = logging.getLogger(__name__)


def stage0_rollouts(cfg: RunConfig) -> Path:
    """Text-teacher traces of the stage-0 split (written by stage 01 in the embedded world)."""
    from dualdistill.rollouts import stage0_path

    return stage0_path(cfg)


def read_stage0_records(cfg: RunConfig) -> list[dict[str, Any]]:
    """The latest stage-0 rollout record per key, from this config's rollouts only."""
    from dualdistill.rollouts import rollout_hash

    path = stage0_rollouts(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"stage-0 text-teacher traces not found at {path}: run stage 01 "
                                "(dualdistill rollouts --stage0 / notebooks/01_teacher_rollouts.ipynb) first")
    chash = rollout_hash(cfg)
    return [r for r in JsonlStore(path).latest().values() if r.get("config_hash", chash) == chash]


def model_path(cfg: RunConfig, name: str) -> str:
    """Where model ``name`` lives: S0 of a hub student is ``student.model`` itself; everything
    else is the run's plain model dir ``RunPaths.model(name)`` (loadable by transformers / vLLM)."""
    if name == "S0" and cfg.student.model != "tiny":
        return cfg.student.model
    return str(RunPaths.of(cfg).model(name))


def stage0_examples(records: list[dict[str, Any]], prompt_style: str = "r1") -> list[dict[str, Any]]:
    """Training examples (source ``stage0``) from teacher rollout records: correct, ok,
    well-formed text-teacher trajectories, with the code-mode training prompt."""
    out, skipped = [], 0
    for i, rec in enumerate(records):
        if rec.get("teacher", "text") != "text" or rec.get("status", "ok") != "ok" or not rec.get("correct", True):
            continue
        try:
            prob, traj = rec["problem"], rec["trajectory"]
            segments = [formatting.Segment.from_dict(s) for s in traj["segments"]]
            pid, text = prob["id"], prob["problem"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"stage-0 record {i} ({rec.get('key')!r}): malformed ({err!r})") from None
        if not formatting.is_valid(segments):
            skipped += 1
            continue
        out.append({
            "key": record_key(pid, rec.get("role", "first"), rec.get("sample", 0), "stage0"),
            "problem_id": pid,
            "prompt": formatting.build_prompt(text, code=True, style=prompt_style),
            "segments": [s.to_dict() for s in segments],
            "mask_until_first_transition": False,
            "first": "text",
            "subset": prob.get("subset"),
            "family": prob.get("family"),
            "source": "stage0",
        })
    if skipped:
        log.warning("stage 0: skipped %d text-teacher traces with an invalid format", skipped)
    return out


def _read_examples(path: Path, what: str, maker: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}: run {maker} first")
    examples = read_jsonl(path)
    if not examples:
        raise ValueError(f"{what} at {path} is empty: nothing to train on")
    return examples


def training_jobs(cfg: RunConfig) -> list[dict[str, Any]]:
    """The SFT runs of this stage, in order: name, examples file, base, SFT settings."""
    paths = RunPaths.of(cfg)
    jobs = []
    if cfg.student.model == "tiny":
        jobs.append({"name": "S0", "data": stage0_rollouts(cfg), "base": str(paths.tiny_base),
                     "sft": cfg.student.stage0_sft or cfg.sft, "what": "stage-0 text-teacher traces",
                     "maker": "stage 01 (dualdistill prepare-student / rollouts)"})
    jobs.append({"name": "S1", "data": paths.t1, "base": model_path(cfg, "S0"), "sft": cfg.sft,
                 "what": "T1", "maker": "stage 02 (dualdistill compose)"})
    for name in sorted(cfg.baselines):
        jobs.append({"name": name, "data": paths.baseline_data(name), "base": model_path(cfg, "S0"),
                     "sft": cfg.sft, "what": f"baseline {name!r} data", "maker": "stage 02 (dualdistill compose)"})
    return jobs


def run_teacher_distillation(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train S0 (embedded), S1 and the baselines; return a per-model summary (steps, final loss,
    examples, dropped, seconds, ...) and write it to ``checkpoints/summary.json``."""
    from dualdistill.sft import train_sft

    paths = RunPaths.of(cfg)
    if cfg.student.model == "tiny" and not paths.tiny_base.is_dir():
        raise FileNotFoundError(f"tiny base model not found at {paths.tiny_base}: run stage 01 "
                                "(dualdistill prepare-student) first")
    models: dict[str, Any] = {}
    for job in training_jobs(cfg):
        if job["name"] == "S0":
            examples = stage0_examples(read_stage0_records(cfg), cfg.student.prompt_style)
            if not examples:
                raise ValueError(f"{job['data']}: no correct text-teacher trace to build S0 from")
        else:
            examples = _read_examples(Path(job["data"]), job["what"], job["maker"])
        log.info("SFT %s: %d examples from %s on %s (%s)", job["name"], len(examples), job["data"],
                 job["base"], job["sft"].method)
        result = train_sft(examples, job["base"], paths.checkpoints(job["name"]), job["sft"],
                           model_dir=paths.model(job["name"]), resume=True, device=cfg.device, progress=progress)
        models[job["name"]] = {"data": str(job["data"]), **result}
    summary = {"models": models, "model_dirs": {n: model_path(cfg, n) for n in ["S0", *models]}}
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under accelerate launch
        out = paths.root / "checkpoints" / "summary.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, default=str))
        cfg.save(paths.root / "checkpoints" / "config.yaml")
    return summary


def mask_example(cfg: RunConfig) -> dict[str, Any]:
    """A T1 example worth looking at in colour: a fixed wrong first attempt with code and executor
    output (case 01), else any example with executor output, else the first one."""
    t1 = _read_examples(RunPaths.of(cfg).t1, "T1", "stage 02 (dualdistill compose)")

    def kinds(ex: dict[str, Any]) -> set[str]:
        return {s.get("kind") for s in ex.get("segments", [])}

    ranked = sorted(t1, key=lambda ex: (not ex.get("mask_until_first_transition"), "executor" not in kinds(ex),
                                         "transition" not in kinds(ex), len(json.dumps(ex["segments"]))))
    return ranked[0]


def summary_table(summary: dict[str, Any]) -> Any:
    """One row per trained model: the figures the notebook shows."""
    import pandas as pd

    cols = ["method", "examples", "kept", "dropped", "truncated", "steps", "epochs", "first_loss", "final_loss",
            "tokens_trained", "seconds", "tokens_per_s", "peak_gpu_gb", "skipped"]
    rows = {name: {c: r.get(c) for c in cols} for name, r in summary["models"].items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def loss_curves(cfg: RunConfig, names: list[str] | None = None) -> Any:
    """Long table (model, step, epoch, loss) from each model's ``loss.csv``."""
    import pandas as pd

    paths = RunPaths.of(cfg)
    names = names or [j["name"] for j in training_jobs(cfg)]
    frames = []
    for name in names:
        f = paths.checkpoints(name) / "loss.csv"
        if f.is_file():
            df = pd.read_csv(f)
            frames.append(df.assign(model=name)[["model", "step", "epoch", "loss"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "step", "epoch", "loss"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m dualdistill.distill PARAMS [section.field=value ...]``"""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(argv[0], dict(parse_override(a) for a in argv[1:]))
    summary = run_teacher_distillation(cfg)
    print(summary_table(summary).to_string())
    return summary


if __name__ == "__main__":
    main()
