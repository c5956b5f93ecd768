"""Where a run's artefacts live: ``outputs/<run>/...`` (one place, so stages agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, cfg) -> RunPaths:  # cfg: RunConfig
        return cls(Path(cfg.output_dir) / cfg.run_name)

    def model(self, name: str) -> Path:
        """A trained model (plain, loadable by transformers and vLLM): S0, S1, S2, text_only, ..."""
        return self.root / "models" / name

    @property
    def tiny_base(self) -> Path:
        return self.root / "models" / "tiny_base"

    @property
    def problems(self) -> Path:
        return self.root / "problems"

    @property
    def teacher_rollouts(self) -> Path:
        return self.root / "rollouts" / "teacher_rollouts.jsonl"

    @property
    def t1(self) -> Path:
        return self.root / "t1" / "examples.jsonl"

    def baseline_data(self, name: str) -> Path:
        return self.root / "baselines" / f"{name}.jsonl"

    @property
    def sd_samples(self) -> Path:
        return self.root / "self_distill" / "samples.jsonl"

    @property
    def t2(self) -> Path:
        return self.root / "t2" / "examples.jsonl"

    def eval_records(self, model: str) -> Path:
        return self.root / "eval" / f"{model}.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def summary(self) -> Path:
        return self.root / "report" / "summary.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def checkpoints(self, name: str) -> Path:
        return self.root / "checkpoints" / name
