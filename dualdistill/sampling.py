"""Sample, grade, record: the one resumable routine under self-distillation (step 5) and evaluation.

    jobs = [SampleJob(key, problem, sample, prompt) for ...]
    n_new = sample_and_record(policy, jobs, store, settings=SampleSettings(model="S1", ...))

Jobs whose key already has a successful record in ``store`` are skipped, so a rerun generates only
what is missing and never duplicates a record. The rest stream through the tool loop
(:func:`dualdistill.tool_loop.generate_trajectories`) with at most ``settings.max_in_flight``
trajectories under way; each trajectory is graded (:func:`dualdistill.grading.grade_result`) and
appended to the store as a :class:`~dualdistill.records.SampleRecord` line the moment it ends. A
crash (even ``kill -9``) loses only the trajectories in flight. A trajectory whose policy failed is
recorded as ``failed`` (never correct); a rerun tries it again.

:func:`build_model_policy` builds the policy of a model to sample (S0/S1/S2, a baseline, an eval
model) with the right arguments per backend, and :func:`context_needed` says how long a context
that needs (longest prompt + budget), which vLLM gets as ``max_model_len`` unless params set one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dualdistill import official, progress
from dualdistill.config import PolicyConfig
from dualdistill.grading import grade_result
from dualdistill.policy import Policy, build_policy
from dualdistill.problem import Problem
from dualdistill.records import SampleRecord
from dualdistill.sandbox import SandboxPool
from dualdistill.store import JsonlStore
from dualdistill.tool_loop import RolloutItem, generate_trajectories
from dualdistill.trajectory import Trajectory

PROMPT_MARGIN = 64  # tokens of slack in context_needed (a BOS, a forced <answer>, ...)


@dataclass(frozen=True)
class SampleJob:
    """One trajectory to sample: its record key, the problem, the sample index and the full prompt."""

    key: str
    problem: Problem
    sample: int
    prompt: str


@dataclass(frozen=True)
class Sampling:
    """How a model is sampled, identical across backends and written into every record."""

    backend: str
    temperature: float
    top_p: float = 1.0
    top_k: int = -1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SampleSettings:
    """What every record of one call shares: who is sampled, on what, and how."""

    model: str
    benchmark: str
    budget_name: str
    budget: int
    max_code_calls: int
    sampling: Sampling
    tools: bool = True
    config_hash: str = ""
    benchmark_version: str = "custom"
    role: str | None = None  # who answers, for the per-request seeds (default: the model's name)
    max_in_flight: int = 256
    call_cap: str = "notice"


def pending(jobs: list[SampleJob], store: JsonlStore) -> list[SampleJob]:
    """The jobs without a successful record in ``store``."""
    latest = store.latest()
    return [j for j in jobs if latest.get(j.key, {}).get("status") != "ok"]


def sample_and_record(policy: Policy | Callable[[], Policy], jobs: list[SampleJob], store: JsonlStore,
                      settings: SampleSettings, *, sandbox_pool: SandboxPool | None, show_progress: bool = True,
                      desc: str = "samples") -> int:
    """Sample, grade and append a record for every pending job as it ends; returns how many were written.
    ``policy`` may be a function that builds it: called only when a job is pending (a policy that starts
    an engine or a server is then not started for nothing on a rerun)."""
    todo = pending(jobs, store)
    if not todo:
        return 0
    if not isinstance(policy, Policy):
        policy = policy()
    bar = progress.bar(len(todo), desc, enabled=show_progress, unit="trajectories")
    written = 0

    def on_finish(index: int, traj: Trajectory) -> None:
        nonlocal written
        job = todo[index]
        g = grade_result(traj.completion, job.problem.answer)
        store.append(record(job, traj, settings, correct=bool(g.correct), grade_status=g.status))
        written += 1
        bar.update(1)

    s = settings.sampling
    items = [RolloutItem(problem=j.problem, prompt=j.prompt, role=settings.role or settings.model, sample=j.sample)
             for j in todo]
    try:
        generate_trajectories(
            policy, items, budget=settings.budget, max_code_calls=settings.max_code_calls,
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, sandbox_pool=sandbox_pool,
            tools=settings.tools, seed=s.seed, progress=False, on_finish=on_finish,
            max_in_flight=settings.max_in_flight, call_cap=settings.call_cap,
        )
    finally:
        bar.close()
    return written


def record(job: SampleJob, traj: Trajectory, settings: SampleSettings, *, correct: bool,
           grade_status: str) -> dict[str, Any]:
    """The :class:`SampleRecord` line of one graded trajectory."""
    return SampleRecord.from_trajectory(
        traj, problem=job.problem, correct=correct, key=job.key, model=settings.model,
        benchmark=settings.benchmark, budget=settings.budget_name, budget_tokens=settings.budget,
        sample=job.sample, grade_status=grade_status, tools=settings.tools,
        benchmark_version=settings.benchmark_version, config_hash=settings.config_hash,
        sampling=settings.sampling.to_dict(),
        official_correct=official.verdict(traj.completion, job.problem.answer),  # official-comparable score
    ).to_dict()


def context_needed(prompts: list[str], budget: int, tokenizer: Any = None) -> int:
    """Tokens a context must hold: the longest prompt (counted with ``tokenizer``, else bounded by its
    characters) plus the budget and a small margin."""
    if tokenizer is not None:
        longest = max((len(tokenizer.encode(p, add_special_tokens=False)) for p in prompts), default=0)
    else:
        longest = max((len(p) for p in prompts), default=0)
    return longest + budget + PROMPT_MARGIN


def build_model_policy(pcfg: PolicyConfig, *, device: str = "auto", seed: int = 0,
                       max_context: int | None = None) -> Policy:
    """The policy of a sampled model, with each backend's own arguments (hf: the device; vllm and
    vllm-server: the seed and the context it needs, their ``max_model_len`` unless the params set one)."""
    if pcfg.backend == "hf":
        return build_policy(pcfg, device=device, seed=seed)
    if pcfg.backend in ("vllm", "vllm-server"):
        return build_policy(pcfg, seed=seed, max_context=max_context)
    return build_policy(pcfg, seed=seed)
