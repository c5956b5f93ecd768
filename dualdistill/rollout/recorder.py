"""Sample, grade, record: the one resumable routine under every stage that samples (teachers, S1, evaluation).

    jobs = [Job(key, RolloutItem(problem, prompt, role="S1", sample=s)) for ...]
    counts = record_trajectories(policy, jobs, store, cfg.self_distill.sampling(), budget=768,
                                 sandbox_pool=pool, to_record=lambda job, traj, error: {...})
    n_new = sample_and_record(policy, sample_jobs, store, SampleSettings(model="S1", ...))   # samples

:func:`record_trajectories` streams jobs through the tool loop
(:func:`dualdistill.rollout.tool_loop.generate_trajectories`) with at most ``max_in_flight``
trajectories under way, and appends each trajectory's record (``to_record``: it grades) the moment
it ends, so a crash (even ``kill -9``) loses only the trajectories in flight. A trajectory whose
policy failed (finish reason ``error``) is tried again ``retries`` times with exponential backoff
(tenacity); after the last try it is recorded as failed, with its error, and a rerun tries it again.
A loop that raised (a policy or sandbox that broke) is tried again the same way when ``retries`` > 0,
else the error goes to the caller (what ended is on disk). When ``halt_after`` trajectories in a row
errored (the endpoint is gone: every request fails fast), a round starts no more trajectories: those
not started end as errors saying why, and are retried, then recorded as failed, like the others.

:func:`sample_and_record` is that routine for :class:`~dualdistill.formats.records.SampleRecord` s
(self-distillation and evaluation): jobs whose key already has a successful record in ``store`` are
skipped, so a rerun generates only what is missing and never duplicates a record; each trajectory is
graded by the strict grader and by the official-comparable score. :func:`build_model_policy` builds
the policy of a model to sample with each backend's own arguments, and :func:`context_needed` says
how long a context that needs (longest prompt + budget), which vLLM gets as ``max_model_len``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from dualdistill.common import progress
from dualdistill.common.failures import short_error
from dualdistill.config import PolicyConfig, SamplingSettings
from dualdistill.formats.formatting import LOOP_MODES
from dualdistill.formats.problem import Problem
from dualdistill.formats.records import SampleRecord
from dualdistill.formats.trajectory import Trajectory
from dualdistill.grading import official_score
from dualdistill.grading.grader import grade_result
from dualdistill.rollout.official_loop import OfficialLoop
from dualdistill.rollout.policy import Policy, build_policy
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
from dualdistill.sandbox.pool import SandboxPool

log = logging.getLogger(__name__)

PROMPT_MARGIN = 64  # tokens of slack in context_needed (a BOS, a forced <answer>, ...)
HALT_AFTER = 16  # errored trajectories in a row after which a round starts no more (record_trajectories)
ToRecord = Callable[["Job", "Trajectory | None", "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """One trajectory to sample and record: its record key, what the tool loop gets, and what the
    record needs besides (``meta``: never sent to the policy)."""

    key: str
    item: RolloutItem
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordCounts:
    """What one :func:`record_trajectories` call did."""

    written: int = 0
    ok: int = 0
    failed: int = 0
    errored_attempts: int = 0  # errored generations over all tries (a retried one counts each time)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few errors of failed records

    def add(self, other: RecordCounts) -> None:
        self.written += other.written
        self.ok += other.ok
        self.failed += other.failed
        self.errored_attempts += other.errored_attempts
        self.seconds += other.seconds
        self.errors = (self.errors + other.errors)[:5]


class _Errored(Exception):
    """Some trajectories of a round errored; tenacity tries the round again."""


def record_trajectories(policy: Policy, jobs: list[Job], store: Any, settings: SamplingSettings, *, budget: int,
                        to_record: ToRecord, seed: int = 0, tools: bool = True,
                        sandbox_pool: SandboxPool | None = None, call_cap: str = "notice", retries: int = 0,
                        backoff: float = 1.0, bar: Any = None, mode: str = "project",
                        halt_after: int = HALT_AFTER) -> RecordCounts:
    """Sample every job with the tool loop and append ``to_record(job, trajectory, error)`` to
    ``store`` as each ends (module docstring). ``mode``: the project's loop or the official one
    (:mod:`dualdistill.rollout.official_loop`). ``to_record`` gets ``error=None`` for a trajectory that
    finished, and the error (``trajectory`` possibly None) for one recorded as failed after
    ``retries`` more tries."""
    if mode not in LOOP_MODES:
        raise ValueError(f"mode must be one of {LOOP_MODES}, got {mode!r}")
    loop = OfficialLoop if mode == "official" else None
    counts = RecordCounts()
    last: dict[str, tuple[Trajectory | None, str]] = {}
    done: set[str] = set()

    def write(job: Job, traj: Trajectory | None, error: str | None) -> None:
        store.append(to_record(job, traj, error))
        done.add(job.key)
        counts.written += 1
        if error is None:
            counts.ok += 1
        else:
            counts.failed += 1
            if len(counts.errors) < 5:
                counts.errors.append(error)
        if bar is not None:
            bar.update(1)

    def one_round(todo: list[Job]) -> list[Job]:
        errored: list[Job] = []
        streak: list[str] = []  # the errors of the trajectories that errored in a row, up to now

        def on_finish(i: int, traj: Trajectory) -> None:
            job = todo[i]
            if traj.finish_reason == "error":
                errored.append(job)
                last[job.key] = (traj, traj.meta.get("error") or "generation error")
                streak.append(last[job.key][1])
            else:
                streak.clear()
                write(job, traj, None)

        def halt() -> str | None:
            if len(streak) < halt_after:
                return None
            return f"not started: {len(streak)} trajectories in a row failed (last: {short_error(streak[-1])})"

        t0 = time.perf_counter()
        try:
            generate_trajectories(policy, [j.item for j in todo], settings, budget=budget, seed=seed, tools=tools,
                                  sandbox_pool=sandbox_pool, call_cap=call_cap, on_finish=on_finish, halt=halt,
                                  progress=False, loop=loop)
        except Exception as err:  # a policy or sandbox that raised: what is not recorded is tried again
            if not retries:
                raise  # nothing to try again: the caller fails loudly (what ended is on disk)
            log.exception("the tool loop raised")
            errored = [j for j in todo if j.key not in done]
            for j in errored:
                last[j.key] = (None, f"{type(err).__name__}: {err}")
        finally:
            counts.seconds += time.perf_counter() - t0
        counts.errored_attempts += len(errored)
        return errored

    pending = list(jobs)
    try:
        for attempt in Retrying(stop=stop_after_attempt(retries + 1), retry=retry_if_exception_type(_Errored),
                                wait=wait_exponential(multiplier=backoff, max=60)):
            with attempt:
                pending = one_round(pending)
                if pending:
                    raise _Errored(f"{len(pending)} trajectories errored")
    except RetryError:
        for job in pending:
            traj, error = last[job.key]
            log.warning("%s: failed after %d tries: %s", job.key, retries + 1, error)
            write(job, traj, error)
    return counts


# --- samples of a model (self-distillation, evaluation) ---------------------------------------------
@dataclass(frozen=True)
class SampleJob:
    """One sample to draw: its record key, the problem, the sample index and the full prompt."""

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
    sampling: SamplingSettings
    backend: str
    seed: int = 0
    tools: bool = True
    config_hash: str = ""
    benchmark_version: str = "custom"
    role: str | None = None  # who answers, for the per-request seeds (default: the model's name)
    call_cap: str = "notice"
    mode: str = "project"  # the tool loop: project | official (formatting.loop_mode)


def sampling_record(backend: str, sampling: SamplingSettings, seed: int) -> dict[str, Any]:
    """How a model was sampled, as every sample record (and the evaluation key) holds it."""
    return {"backend": backend, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "top_k": sampling.top_k, "seed": seed}


def pending(jobs: list[SampleJob], store: Any) -> list[SampleJob]:
    """The jobs without a successful record in ``store``."""
    latest = store.latest()
    return [j for j in jobs if latest.get(j.key, {}).get("status") != "ok"]


def sample_and_record(policy: Policy | Callable[[], Policy], jobs: list[SampleJob], store: Any,
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
    by_key = {j.key: j for j in todo}
    role = settings.role or settings.model

    def to_record(job: Job, traj: Trajectory | None, error: str | None) -> dict[str, Any]:
        sample = by_key[job.key]
        if traj is None:  # the loop raised before this trajectory ended
            traj = Trajectory(problem_id=sample.problem.id, role=role, prompt=sample.prompt, segments=[],
                              finish_reason="error", meta={"error": error})
        return sample_record(sample, traj, settings)

    bar = progress.bar(len(todo), desc, enabled=show_progress, unit="trajectories")
    try:
        counts = record_trajectories(
            policy, [Job(j.key, RolloutItem(problem=j.problem, prompt=j.prompt, role=role, sample=j.sample))
                     for j in todo],
            store, settings.sampling, budget=settings.budget, to_record=to_record, seed=settings.seed,
            tools=settings.tools, sandbox_pool=sandbox_pool, call_cap=settings.call_cap, bar=bar, mode=settings.mode)
    finally:
        bar.close()
    return counts.written


def sample_record(job: SampleJob, traj: Trajectory, settings: SampleSettings) -> dict[str, Any]:
    """The :class:`SampleRecord` line of one trajectory, graded by the strict grader and by the
    official-comparable score."""
    g = grade_result(traj.completion, job.problem.answer)
    return SampleRecord.from_trajectory(
        traj, problem=job.problem, correct=bool(g.correct), key=job.key, model=settings.model,
        benchmark=settings.benchmark, budget=settings.budget_name, budget_tokens=settings.budget,
        sample=job.sample, grade_status=g.status, tools=settings.tools,
        benchmark_version=settings.benchmark_version, config_hash=settings.config_hash,
        sampling=sampling_record(settings.backend, settings.sampling, settings.seed),
        official_correct=official_score.verdict(traj.completion, job.problem.answer),
    ).to_dict()


# --- the policy of a sampled model ----------------------------------------------------------------------
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
