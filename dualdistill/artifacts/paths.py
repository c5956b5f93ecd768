"""Where every artefact of a run lives under ``outputs/<run>/``, and what is missing when it is not there.

    paths = RunPaths.of(cfg)              # paths.t1, paths.model("S1"), paths.summary, ...
    require("02", paths.t1, "T1")         # the path, or a MissingStageError naming stage 02
    require_model(cfg, "S1")              # a trained model's directory, or the stage that trains it

A missing input is a :class:`MissingStageError` naming the stage that makes it and the path it was
expected at, raised before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dualdistill.artifacts.stage_table import BY_NUMBER, Stage
from dualdistill.config import RunConfig

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

