"""Sample, grade, record: the one resumable routine under self-distillation (step 5) and evaluation.

    jobs = [SampleJob(key, problem, sample, prompt) for ...]
    n_new = sample_and_record(policy, jobs, store, settings=SampleSettings(model="S1", ...))

Jobs whose key already has a successful record in ``store`` are skipped, so a rerun generates only
what is missing and never duplicates a record. The rest go through the tool loop
(:func:`dualdistill.tool_loop.generate_trajectories`) in chunks, are graded with
:func:`dualdistill.grading.grade_many` and appended to the store as
:class:`~dualdistill.records.SampleRecord` lines (crash-safe JSONL). A trajectory whose policy
failed is recorded as ``failed`` (never correct); a rerun tries it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dualdistill import official, progress
from dualdistill.grading import grade_many
from dualdistill.policy import Policy
from dualdistill.problem import Problem
from dualdistill.records import SampleRecord
from dualdistill.sandbox import SandboxPool
from dualdistill.store import JsonlStore
from dualdistill.tool_loop import RolloutItem, generate_trajectories


@dataclass(frozen=True)
class SampleJob:
    """One trajectory to sample: its record key, the problem, the sample index and the full prompt."""

    key: str
    problem: Problem
    sample: int
    prompt: str


@dataclass(frozen=True)
class SampleSettings:
    """What every record of one call shares: who is sampled, on what, and how."""

    model: str
    benchmark: str
    budget_name: str
    budget: int
    temperature: float
    max_code_calls: int
    tools: bool = True
    seed: int = 0
    config_hash: str = ""
    benchmark_version: str = "custom"
    role: str | None = None  # who answers, for the per-request seeds (default: the model's name)


def pending(jobs: list[SampleJob], store: JsonlStore) -> list[SampleJob]:
    """The jobs without a successful record in ``store``."""
    latest = store.latest()
    return [j for j in jobs if latest.get(j.key, {}).get("status") != "ok"]


def sample_and_record(policy: Policy, jobs: list[SampleJob], store: JsonlStore, settings: SampleSettings, *,
                      sandbox_pool: SandboxPool | None, grade_workers: int | None = None, chunk_size: int = 256,
                      show_progress: bool = True, desc: str = "samples") -> int:
    """Sample, grade and append a record for every pending job; returns how many were written."""
    todo = pending(jobs, store)
    if not todo:
        return 0
    bar = progress.bar(len(todo), desc, enabled=show_progress, unit="trajectories")
    written = 0
    try:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            items = [RolloutItem(problem=j.problem, prompt=j.prompt, role=settings.role or settings.model,
                                 sample=j.sample) for j in chunk]
            trajs = generate_trajectories(
                policy, items, budget=settings.budget, max_code_calls=settings.max_code_calls,
                temperature=settings.temperature, sandbox_pool=sandbox_pool, tools=settings.tools, seed=settings.seed,
                progress=False, on_finish=lambda _i, _t: bar.update(1),
            )
            grades = grade_many([(t.completion, j.problem.answer) for t, j in zip(trajs, chunk, strict=True)],
                                workers=grade_workers)
            for job, traj, g in zip(chunk, trajs, grades, strict=True):
                store.append(record(job, traj, settings, correct=bool(g.correct), grade_status=g.status))
                written += 1
    finally:
        bar.close()
    return written


def record(job: SampleJob, traj: Any, settings: SampleSettings, *, correct: bool, grade_status: str) -> dict[str, Any]:
    """The :class:`SampleRecord` line of one graded trajectory."""
    return SampleRecord.from_trajectory(
        traj, problem=job.problem, correct=correct, key=job.key, model=settings.model,
        benchmark=settings.benchmark, budget=settings.budget_name, budget_tokens=settings.budget,
        sample=job.sample, grade_status=grade_status, tools=settings.tools,
        benchmark_version=settings.benchmark_version, config_hash=settings.config_hash,
        sampling={"temperature": settings.temperature, "seed": settings.seed},
        official_correct=official.verdict(traj.completion, job.problem.answer),  # official-comparable score
    ).to_dict()
