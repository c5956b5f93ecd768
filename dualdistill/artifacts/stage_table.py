"""The stage table: Algorithm 1 as six numbered stages, each a notebook, a CLI verb and one function.

    for s in STAGES: print(s.number, s.verb, s.notebook)
    get_stage("03").function()(cfg)          # == dualdistill distill params.yaml

Read by the pipeline runner (which notebook to execute), the CLI (which subcommand runs what) and
``artifacts`` (where each stage keeps its outputs and metrics). This module imports nothing of the
package: stage modules are found by name, so no stage imports another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One stage: ``module.run(cfg, *, progress=True) -> dict`` is its function."""

    number: str  # "01" .. "06"
    verb: str  # the CLI subcommand
    module: str  # dualdistill.<module>
    notebook: str  # notebooks/<notebook>
    title: str  # what it does, in a few words
    directory: str  # its outputs under outputs/<run>/ (metrics.json goes there)

    def function(self) -> Callable[..., dict[str, Any]]:
        """The stage function (imported on first use)."""
        return importlib.import_module(f"dualdistill.stages.{self.module}").run


STAGES: tuple[Stage, ...] = (
    Stage("01", "rollouts", "teacher_rollouts", "01_teacher_rollouts.ipynb",
          "teacher rollouts (steps 1-2)", "rollouts"),
    Stage("02", "compose", "compose", "02_compose_trajectories.ipynb",
          "composition of T1 (steps 2-3)", "t1"),
    Stage("03", "distill", "teacher_distillation", "03_teacher_distillation_sft.ipynb",
          "teacher distillation: S0, S1, baselines (step 4)", "models"),
    Stage("04", "self-distill", "self_distillation", "04_self_distillation.ipynb",
          "self-distillation: samples, T2, S2 (steps 5-7)", "self_distill"),
    Stage("05", "evaluate", "evaluation", "05_evaluation.ipynb",
          "evaluation", "eval"),
    Stage("06", "analyze", "analysis", "06_analysis.ipynb",
          "analysis: tables and figures", "report"),
)
BY_NUMBER = {s.number: s for s in STAGES}
BY_VERB = {s.verb: s for s in STAGES}


def get_stage(key: str) -> Stage:
    """A stage by number (``"03"``) or verb (``"distill"``)."""
    stage = BY_NUMBER.get(key) or BY_VERB.get(key)
    if stage is None:
        known = ", ".join(f"{s.number} ({s.verb})" for s in STAGES)
        raise ValueError(f"unknown stage {key!r}; stages are {known}")
    return stage
