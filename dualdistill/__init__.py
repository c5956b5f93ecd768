"""DualDistill: distil a text reasoner and a code agent into one student (arXiv 2507.05707).

    import dualdistill as dd
    cfg = dd.load_config("params/smoke.yaml")
    dd.run_teacher_rollouts(cfg)      # stage 01 ... dd.run_analysis(cfg)   # stage 06

The names below are the package's public face: what a notebook or a user script imports. They are
loaded on first use, so ``import dualdistill`` stays cheap. Where each lives (one folder per concern):
``docs/ARCHITECTURE.md``.
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
    # the stages of Algorithm 1 (one function each; dualdistill.artifacts.stage_table is the table)
    "run_teacher_rollouts": "dualdistill.stages.teacher_rollouts:run",
    "run_composition": "dualdistill.stages.compose:run",
    "run_teacher_distillation": "dualdistill.stages.teacher_distillation:run",
    "run_self_distillation": "dualdistill.stages.self_distillation:run",
    "run_evaluation": "dualdistill.stages.evaluation:run",
    "run_analysis": "dualdistill.stages.analysis:run",
    "run_pipeline": "dualdistill.pipeline.papermill_runner:run_pipeline",
    "STAGES": "dualdistill.artifacts.stage_table:STAGES",
    # the tool loop, the sandbox, the grader
    "generate_trajectories": "dualdistill.rollout.tool_loop:generate_trajectories",
    "RolloutItem": "dualdistill.rollout.tool_loop:RolloutItem",
    "build_policy": "dualdistill.rollout.policy:build_policy",
    "GenerationRequest": "dualdistill.rollout.policy:GenerationRequest",
    "executor_text": "dualdistill.rollout.tool_loop:executor_text",
    "request_seed": "dualdistill.rollout.tool_loop:request_seed",
    "parse_segments": "dualdistill.formats.formatting:parse",
    "CODE_STOP": "dualdistill.formats.formatting:CODE_STOP",
    "ANSWER_STOP": "dualdistill.rollout.tool_loop:ANSWER_STOP",
    "PythonSandbox": "dualdistill.sandbox.python_sandbox:PythonSandbox",
    "make_sandbox_pool": "dualdistill.sandbox.pool:make_sandbox_pool",
    "grade": "dualdistill.grading.grader:grade",
    "grade_result": "dualdistill.grading.grader:grade_result",
    # records
    "Problem": "dualdistill.formats.problem:Problem",
    "Segment": "dualdistill.formats.formatting:Segment",
    "Trajectory": "dualdistill.formats.trajectory:Trajectory",
    "TeacherRecord": "dualdistill.formats.records:TeacherRecord",
    "TrainingExample": "dualdistill.formats.records:TrainingExample",
    "SampleRecord": "dualdistill.formats.records:SampleRecord",
    # a run's files: where they are and which records are current
    "RunPaths": "dualdistill.artifacts.paths:RunPaths",
    "read_metrics": "dualdistill.artifacts.ledger:read_metrics",
    "teacher_records": "dualdistill.artifacts.current:teacher_records",
    "t1_examples": "dualdistill.artifacts.current:t1_examples",
    "CASES": "dualdistill.algorithm.composition:CASES",
    "self_distill_samples": "dualdistill.artifacts.current:self_distill_samples",
    "eval_rows": "dualdistill.artifacts.current:eval_rows",
    "eval_records": "dualdistill.artifacts.current:eval_records",
    "sweep_rows": "dualdistill.artifacts.current:sweep_rows",
    "read_jsonl": "dualdistill.common.store:read_jsonl",
    "load_student_tokenizer": "dualdistill.training.student:load_student_tokenizer",
    "tokenize_with_labels": "dualdistill.training.masking:tokenize_with_labels",
    # what the notebooks show
    "start": "dualdistill.pipeline.notebook:start",
    "settings_table": "dualdistill.pipeline.notebook:settings_table",
    "notes_html": "dualdistill.pipeline.notebook:notes_html",
    "key_figures": "dualdistill.report.views:key_figures",
    "render_html": "dualdistill.report.views:render_html",
    "render_record_html": "dualdistill.report.views:render_record_html",
    "mask_view_html": "dualdistill.report.mask_views:mask_view_html",
    "results_table": "dualdistill.report.tables:results_table",
    "table_markdown": "dualdistill.report.tables:table_markdown",
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
