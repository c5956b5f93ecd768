"""What each stage writes under ``outputs/<run>/``, and which of its records are current.

    paths = RunPaths.of(cfg)                    # where everything lives
    records = teacher_records(cfg)              # stage 01's records for this config
    samples = self_distill_samples(cfg)         # stage 04's samples for this config, K and problem set

Stages meet only in files: a stage reads what an earlier one wrote through this module and never
imports the earlier stage. "Current" means written under the config that would write it now: each
artefact's identity is a hash of the config fields that make it (:func:`config_hash`), stored in
its records or stamps. A missing input is a :class:`MissingStageError` naming the stage that makes
it and the path it was expected at, raised before anything is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdistill.config import RunConfig
from dualdistill.hashing import stable_hash
from dualdistill.loaders import train_problems
from dualdistill.problem import Problem
from dualdistill.stages import BY_NUMBER, Stage
from dualdistill.store import JsonlStore, read_json, read_jsonl, write_json

SFT_STAMP = "sft_summary.json"  # in a trained model dir: hash + config + summary of its SFT run
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
METRICS = "metrics.json"


class MissingStageError(FileNotFoundError):
    """An input of a stage does not exist: the stage that makes it has not run for this params file."""


def missing(stage: str, path: Path, what: str) -> MissingStageError:
    s: Stage = BY_NUMBER[stage]
    return MissingStageError(
        f"stage {s.number} ({s.title}) has not run for this params file (expected {what} at {path}); "
        f"run `dualdistill {s.verb} PARAMS` or notebooks/{s.notebook} first")


def require(stage: str, path: Path, what: str) -> Path:
    """``path`` if it exists, else a :class:`MissingStageError` naming ``stage``."""
    if not Path(path).exists():
        raise missing(stage, Path(path), what)
    return Path(path)


@dataclass(frozen=True)
class RunPaths:
    """Every artefact's path under ``outputs/<run>/``."""

    root: Path

    @classmethod
    def of(cls, cfg: RunConfig) -> RunPaths:
        return cls(Path(cfg.output_dir) / cfg.run_name)

    def stage_dir(self, stage: str) -> Path:
        return self.root / BY_NUMBER[stage].directory

    def metrics(self, stage: str) -> Path:
        """A stage's key figures (``metrics.json`` beside its outputs)."""
        return self.stage_dir(stage) / METRICS

    def model(self, name: str) -> Path:
        """A trained model (plain, loadable by transformers and vLLM): S0, S1, S2, text_only, ..."""
        return self.root / "models" / name

    def checkpoints(self, name: str) -> Path:
        """The SFT work dir of a model: checkpoints, adapter, loss.csv, summary.json."""
        return self.root / "checkpoints" / name

    @property
    def tiny_base(self) -> Path:
        return self.root / "models" / "tiny_base"

    @property
    def teacher_rollouts(self) -> Path:
        return self.root / "rollouts" / "teacher_rollouts.jsonl"

    @property
    def stage0_rollouts(self) -> Path:
        """Text-teacher traces of the embedded world's stage-0 split (S0 is trained on them)."""
        return self.root / "rollouts" / "stage0.jsonl"

    @property
    def t1(self) -> Path:
        return self.root / "t1" / "examples.jsonl"

    def t1_side(self, name: str) -> Path:
        """Files beside T1: stats.csv, dropped.jsonl, config.yaml."""
        return self.root / "t1" / name

    @property
    def t1_official(self) -> Path:
        """T1 in the official format (``problem``, ``answer``, ``synthetic_data``): what sft/train.py reads."""
        return self.root / "t1" / "official.jsonl"

    def baseline_data(self, name: str) -> Path:
        return self.root / "baselines" / f"{name}.jsonl"

    @property
    def sd_samples(self) -> Path:
        return self.root / "self_distill" / "samples.jsonl"

    @property
    def sd_problem_summary(self) -> Path:
        """One row per problem (n, correct, ḡ), recomputed from the current samples."""
        return self.root / "self_distill" / "problems.jsonl"

    @property
    def t2(self) -> Path:
        return self.root / "t2" / "examples.jsonl"

    @property
    def t2_official(self) -> Path:
        """T2 in the official format, as :attr:`t1_official`."""
        return self.root / "t2" / "official.jsonl"

    @property
    def t2_selection(self) -> Path:
        return self.root / "t2" / "selection.json"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_records(self, model: str) -> Path:
        return self.eval_dir / f"{model}.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def summary(self) -> Path:
        """Stage 05's metric rows per (model, benchmark, budget, subset)."""
        return self.report / "summary.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def stage_markers(self) -> Path:
        return self.root / "stages"

    @property
    def ledger(self) -> Path:
        """What ran: one line per policy a stage built and per SFT run (:func:`record_ran`)."""
        return self.report / "ran.jsonl"

    @property
    def sweep(self) -> Path:
        """``dualdistill sweep``: one run directory per grid point, ``results.jsonl``, the plot."""
        return self.root / "sweep"

    @property
    def sweep_results(self) -> Path:
        return self.sweep / "results.jsonl"


# --- identities: which config fields make an artefact -----------------------------------------------
def _pick(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"config has no field {dotted!r}")
        node = node[part]
    return node


def config_hash(cfg: RunConfig, *fields: str, exclude: tuple[str, ...] = ()) -> str:
    """Stable hash of the named config fields (dotted paths), minus ``exclude``d subfields."""
    data = cfg.model_dump(mode="json")
    picked = {f: _pick(data, f) for f in fields}
    for dotted in exclude:
        head, _, leaf = dotted.rpartition(".")
        parent = picked.get(head) if head in picked else None
        if isinstance(parent, dict):
            picked[head] = {k: v for k, v in parent.items() if k != leaf}
        else:
            raise KeyError(f"exclude {dotted!r}: {head!r} is not one of the hashed sections")
    return stable_hash(picked)


def rollout_hash(cfg: RunConfig) -> str:
    """Teacher rollouts (stage 01): the teachers, sandbox limits, seed, world and the student's
    tokenizer (it counts the budget) — not the number of sandbox workers."""
    return config_hash(cfg, "teachers", "sandbox", "seed", "world", "student.model", "student.tiny",
                       exclude=("sandbox.workers",))


def composition_hash(cfg: RunConfig) -> str:
    """T1 and the baselines' data (stage 02), given the teacher records."""
    return config_hash(cfg, "composition", "baselines", "student.prompt_style")


S1_FIELDS = ("world", "data.train", "teachers", "student", "composition", "sft")
S1_EXCLUDE = ("student.backend", "student.batch_size", "student.extra")


def s1_hash(cfg: RunConfig) -> str:
    """What made S1 (stages 01-03): the world, training data, teachers, student, composition and SFT —
    not how it is sampled. A β sweep reuses S1 only between configs with the same hash."""
    return config_hash(cfg, *S1_FIELDS, exclude=S1_EXCLUDE)


def samples_hash(cfg: RunConfig) -> str:
    """Self-distillation samples (stage 04): everything that made S1 plus how it is sampled — the
    sampling settings and the backend (engines differ in numerics and defaults). K, max_problems, β1,
    β2, pick and the S2 SFT settings are left out on purpose (changing them reuses the samples), and
    so are runtime knobs (batch size, in-flight window, engine arguments)."""
    sd = cfg.self_distill
    backend = sd.policy.backend if sd.policy is not None else cfg.student.backend
    fields = config_hash(cfg, *S1_FIELDS, "self_distill.temperature", "self_distill.top_p", "self_distill.top_k",
                         "self_distill.budget", "self_distill.max_code_calls", "self_distill.seed", "sandbox.timeout",
                         exclude=S1_EXCLUDE)
    return stable_hash([fields, backend])


# --- models ---------------------------------------------------------------------------------------
MODEL_MAKERS = {"S0": "03", "S1": "03", "S2": "04"}  # a baseline is made by stage 03 too


def model_path(cfg: RunConfig, name: str) -> str:
    """Where model ``name`` lives: S0 of a hub student is ``student.model`` itself; everything
    else is the run's plain model dir (loadable by transformers / vLLM)."""
    if name == "S0" and cfg.student.model != "tiny":
        return cfg.student.model
    return str(RunPaths.of(cfg).model(name))


def require_model(cfg: RunConfig, name: str) -> str:
    """:func:`model_path`, or a :class:`MissingStageError` naming the stage that trains the model.
    A hub id (S0 of a hub student) is resolved by the backend, not checked here."""
    path = model_path(cfg, name)
    if name == "S0" and cfg.student.model != "tiny":
        return path
    if not Path(path).exists():
        if name not in MODEL_MAKERS and name not in cfg.baselines:
            raise FileNotFoundError(f"model {name!r} not found at {path}: no stage of this params file trains it")
        raise missing(MODEL_MAKERS.get(name, "03"), Path(path), f"model {name}")
    return path


def model_fingerprint(path: str | Path) -> str:
    """Identity of a model: a trained model dir by its SFT stamp hash; another local dir by its
    config and weight files (names, sizes); anything else (a hub id) by its name."""
    p = Path(path)
    if not p.is_dir():
        return str(path)
    stamp = p / SFT_STAMP
    if stamp.is_file():
        return "sft:" + read_json(stamp).get("hash", "")
    files = sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.is_file() and f.name != SFT_STAMP)
    config = (p / "config.json").read_text() if (p / "config.json").is_file() else ""
    return "dir:" + stable_hash([config, files])


# --- current records --------------------------------------------------------------------------------
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


# --- stage metrics ---------------------------------------------------------------------------------
def write_metrics(cfg: RunConfig, stage: str, metrics: dict[str, Any]) -> Path:
    """A stage's key figures, ``metrics.json`` beside its outputs (notebooks show them, tests read them)."""
    return write_json(RunPaths.of(cfg).metrics(stage), metrics)


def read_metrics(cfg: RunConfig, stage: str) -> dict[str, Any]:
    return read_json(require(stage, RunPaths.of(cfg).metrics(stage), "its metrics.json"))


# --- what ran ----------------------------------------------------------------------------------------
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
