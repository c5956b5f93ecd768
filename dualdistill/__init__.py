"""DualDistill: distil a text reasoner and a code agent into one student (arXiv 2507.05707).

    import dualdistill as dd
    cfg = dd.load_config("params/smoke.yaml")
    dd.run_teacher_rollouts(cfg)      # stage 01 ... dd.run_analysis(cfg)   # stage 06

The names below are the package's public face: what a notebook or a user script imports. They are
loaded on first use, so ``import dualdistill`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # configuration
    "load_config": "dualdistill.config:load_config",
    "RunConfig": "dualdistill.config:RunConfig",
    "ConfigError": "dualdistill.config:ConfigError",
    # the stages of Algorithm 1 (one function each; dualdistill.stages is the table)
    "run_teacher_rollouts": "dualdistill.teacher_rollouts:run",
    "run_composition": "dualdistill.compose:run",
    "run_teacher_distillation": "dualdistill.teacher_distillation:run",
    "run_self_distillation": "dualdistill.self_distillation:run",
    "run_evaluation": "dualdistill.evaluation:run",
    "run_analysis": "dualdistill.analysis:run",
    "run_pipeline": "dualdistill.runner:run_pipeline",
    "STAGES": "dualdistill.stages:STAGES",
    # the tool loop, the grader, the sandbox
    "generate_trajectories": "dualdistill.tool_loop:generate_trajectories",
    "RolloutItem": "dualdistill.tool_loop:RolloutItem",
    "grade": "dualdistill.grading:grade",
    "PythonSandbox": "dualdistill.sandbox:PythonSandbox",
    "build_policy": "dualdistill.policy:build_policy",
    # records
    "Problem": "dualdistill.problem:Problem",
    "Segment": "dualdistill.formatting:Segment",
    "Trajectory": "dualdistill.trajectory:Trajectory",
    "TeacherRecord": "dualdistill.records:TeacherRecord",
    "TrainingExample": "dualdistill.records:TrainingExample",
    "SampleRecord": "dualdistill.records:SampleRecord",
    # where a run's artefacts live
    "RunPaths": "dualdistill.artifacts:RunPaths",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dualdistill' has no attribute {name!r}")
    module, attr = _PUBLIC[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
