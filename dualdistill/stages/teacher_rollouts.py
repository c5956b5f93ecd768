"""Stage 01 — teacher rollouts (Algorithm 1, steps 1–2): y1 from a random first teacher, y2 from
the other teacher conditioned on the problem and y1, both graded.

    python -m dualdistill.stages.teacher_rollouts params/smoke.yaml [--set teachers.samples=2 ...]
    dualdistill rollouts params/smoke.yaml                 # the same call: run(cfg)

:func:`run` is the whole stage: it prepares the student (the embedded default's tiny model, whose
tokenizer counts the budget), rolls out both teachers, and — in the embedded world — the stage-0
text-teacher traces S0 is built from.

For every training problem (near-duplicates of test problems removed) and sample:

- z ~ Bernoulli(``teachers.first_agent_prob``), drawn from a hash of ``seed`` and the problem id,
  so it is the same on every rerun; z=1: the agentic teacher goes first.
- y1: the first teacher answers the problem. The agent sees the code prompt
  (``build_prompt(problem, code=True)``) and runs with tools; the text teacher sees the plain r1
  prompt (``code=False``) and no code is executed. (The *training* prompt of the student is chosen
  later, in composition.)
- y2: the other teacher answers ``build_second_teacher_problem(problem, y1)`` in its own prompt
  format; ``context["first_attempt"]`` holds y1 (scripted teachers read it).
- both are graded against the ground truth with ``dualdistill.grading.grader.grade``.

Records (one JSONL line per trajectory, format in docs/ARCHITECTURE.md) go to
``RunPaths.teacher_rollouts`` as each trajectory ends, keyed by ``record_key(problem id, role,
sample, config hash)``; the hash (``artifacts.rollout_hash``) covers what changes a rollout (teachers,
sandbox limits, seed, world, the student tokenizer that counts tokens). Work goes in chunks: all
y1 of a chunk through the batched tool loop, then their y2. A crash (even ``kill -9``) loses only
trajectories in flight: a rerun does what is missing, never duplicates a key, and never reads a
torn line. A generation error is retried with exponential backoff (tenacity); after the last try
the trajectory is recorded with ``status: failed`` and its error, and a rerun tries it again.

``run_stage0_rollouts`` is the same machinery for the embedded world's stage-0 split (text
teacher only, one per problem, ``RunPaths.stage0_rollouts``), from which S0 is built.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dualdistill.artifacts.current import teacher_records
from dualdistill.artifacts.identity import rollout_hash
from dualdistill.artifacts.ledger import record_ran
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common import progress
from dualdistill.common.failures import check_complete
from dualdistill.common.store import JsonlStore, record_key
from dualdistill.config import DataSource, RunConfig
from dualdistill.data.loaders import load_source, train_problems
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.formats.records import TeacherRecord
from dualdistill.formats.trajectory import Trajectory
from dualdistill.grading.grader import grade
from dualdistill.rollout.policy import Policy, build_policy
from dualdistill.rollout.recorder import Job, RecordCounts, record_trajectories
from dualdistill.rollout.tool_loop import RolloutItem
from dualdistill.sandbox.pool import SandboxPool, make_sandbox_pool
from dualdistill.stages.entry import stage
from dualdistill.training.student import load_student_tokenizer, prepare_student, tokenizer_info

log = logging.getLogger(__name__)

TEACHERS = ("text", "agent")
ROLES = ("first", "second")


# --- identities -------------------------------------------------------------------------------
def first_teacher(cfg: RunConfig, problem_id: str) -> str:
    """z for a problem: ``"agent"`` with probability ``first_agent_prob``, stable across reruns."""
    digest = hashlib.sha256(f"{cfg.seed}|{problem_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "agent" if u < cfg.teachers.first_agent_prob else "text"


def teacher_prompt(problem_text: str, teacher: str) -> str:
    """The agent gets the code prompt, the text teacher the plain r1 prompt."""
    return formatting.build_prompt(problem_text, code=teacher == "agent")


# --- inputs -----------------------------------------------------------------------------------
def load_train_problems(cfg: RunConfig) -> tuple[list[Problem], list[Problem]]:
    """Training problems of ``cfg.data.train`` minus near-duplicates of ``cfg.data.test``
    (``loaders.train_problems``). Returns (kept, removed)."""
    if not cfg.data.train:
        raise ValueError("no training problems: cfg.data.train is empty")
    kept, removed = train_problems(cfg.data, cfg.world)
    if not kept and not removed:
        raise ValueError("no training problems: cfg.data.train is empty")
    log.info("teacher rollouts: %d training problems, %d removed as near-duplicates of test problems",
             len(kept), len(removed))
    return kept, removed


def build_teacher(cfg: RunConfig, teacher: str, tokenizer: Any) -> Policy:
    """The policy of one teacher. An ``hf`` teacher keeps its own tokenizer; the others count tokens
    with the student's (when there is one)."""
    pcfg = getattr(cfg.teachers, teacher)
    if pcfg.backend == "hf":
        return build_policy(pcfg, seed=cfg.seed, device=cfg.device)
    return build_policy(pcfg, tokenizer=tokenizer, seed=cfg.seed)


# --- the resumable machinery --------------------------------------------------------------------
class _Runner:
    """Records teacher trajectories through the one recorder (``rollout.recorder``), a policy per teacher."""

    def __init__(self, cfg: RunConfig, store: JsonlStore, *, chash: str, retries: int, backoff: float,
                 bar: Any, tokenizer: Any, ledger_role: str = "teacher") -> None:
        self.cfg, self.store, self.chash = cfg, store, chash
        self.ledger_role = ledger_role
        self.retries, self.backoff, self.bar = retries, backoff, bar
        self.tokenizer = tokenizer
        self.policies: dict[str, Policy] = {}
        self.pool: SandboxPool | None = None
        self.counts = RecordCounts()
        self.per_teacher: dict[str, int] = defaultdict(int)  # trajectories recorded per teacher

    def policy(self, teacher: str) -> Policy:
        if teacher not in self.policies:
            self.policies[teacher] = build_teacher(self.cfg, teacher, self.tokenizer)
        return self.policies[teacher]

    def close(self) -> None:
        for teacher, p in self.policies.items():
            try:  # the run's ledger: which backend played this teacher, on which tokenizer
                record_ran(self.cfg, "01", f"{self.ledger_role}:{teacher}",
                           {**p.describe(), "trajectories": self.per_teacher[teacher], **tokenizer_info(self.tokenizer)})
            finally:
                p.close()
        if self.pool is not None:
            self.pool.close()
        self.bar.close()

    def to_record(self, job: Job, traj: Trajectory | None, error: str | None) -> dict[str, Any]:
        teacher, role = job.meta["teacher"], job.meta["role"]
        status = "ok" if error is None else "failed"
        correct = bool(status == "ok" and traj is not None and grade(traj.completion, job.item.problem.answer))
        self.per_teacher[teacher] += 1
        return TeacherRecord(key=job.key, problem=job.item.problem.to_dict(), role=role, teacher=teacher,
                             sample=job.item.sample, status=status, error=error,
                             trajectory=traj.to_dict() if traj is not None else None, correct=correct,
                             config_hash=self.chash).to_dict()

    def run(self, jobs: list[Job]) -> dict[str, dict[str, Any]]:
        """Record ``jobs`` (any teachers); return the new records by key."""
        out: dict[str, dict[str, Any]] = {}
        t = self.cfg.teachers
        by_teacher: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_teacher[job.meta["teacher"]].append(job)
        for teacher, group in by_teacher.items():
            tools = teacher == "agent"
            policy = self.policy(teacher)  # a policy or pool that cannot be built is a crash, not a retry
            if tools and t.max_code_calls and self.pool is None:
                self.pool = make_sandbox_pool(self.cfg.sandbox)

            def keep(job: Job, traj: Trajectory | None, error: str | None) -> dict[str, Any]:
                out[job.key] = rec = self.to_record(job, traj, error)
                return rec

            self.counts.add(record_trajectories(
                policy, group, self.store, t.sampling(), budget=t.budget, to_record=keep, seed=self.cfg.seed,
                tools=tools, sandbox_pool=self.pool if tools else None, retries=self.retries, backoff=self.backoff,
                bar=self.bar))
        return out


def _job(key: str, problem: Problem, prompt: str, teacher: str, role: str, sample: int,
         context: dict[str, Any] | None = None) -> Job:
    """A teacher job: ``teacher`` answers as the ``role`` (first or second) of its pair."""
    return Job(key, RolloutItem(problem=problem, prompt=prompt, role=teacher, sample=sample, context=context or {}),
               meta={"teacher": teacher, "role": role})


def _ok(latest: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    rec = latest.get(key)
    return rec if rec is not None and rec.get("status") == "ok" else None


def _chunks(seq: list[Any], size: int) -> list[list[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def run_teacher_rollouts(cfg: RunConfig, *, problems: list[Problem] | None = None, progress: bool = True,
                         chunk_size: int = 64, retries: int = 2, backoff: float = 1.0) -> dict[str, Any]:
    """Steps 1–2 of Algorithm 1 for every problem and sample; resumable. Returns the summary
    (counts, failed, accuracy per teacher and role and per subset / family, trajectories per minute)."""
    paths = RunPaths.of(cfg)
    removed: list[Problem] = []
    if problems is None:
        problems, removed = load_train_problems(cfg)
    chash = rollout_hash(cfg)
    cfg.save(paths.teacher_rollouts.parent / "config.yaml")
    store = JsonlStore(paths.teacher_rollouts)
    pairs = [(p, s) for p in problems for s in range(cfg.teachers.samples)]
    latest = store.latest()

    def key(p: Problem, role: str, s: int) -> str:
        return record_key(p.id, role, s, chash)

    todo = [(p, s) for p, s in pairs if not (_ok(latest, key(p, "first", s)) and _ok(latest, key(p, "second", s)))]
    n_missing = sum(not _ok(latest, key(p, role, s)) for p, s in todo for role in ROLES)
    log.info("teacher rollouts: %d of %d problem-samples to do", len(todo), len(pairs))
    runner = _Runner(cfg, store, chash=chash, retries=retries, backoff=backoff,
                     bar=progress_bar(n_missing, "teacher rollouts", progress),
                     tokenizer=load_student_tokenizer(cfg, local_only=True))
    t0 = time.perf_counter()
    try:
        for chunk in _chunks(todo, chunk_size):
            firsts = []
            for p, s in chunk:
                k = key(p, "first", s)
                if not _ok(latest, k):
                    teacher = first_teacher(cfg, p.id)
                    firsts.append(_job(k, p, teacher_prompt(p.problem, teacher), teacher, "first", s))
            latest.update(runner.run(firsts))
            seconds = []
            for p, s in chunk:
                y1 = _ok(latest, key(p, "first", s))
                k = key(p, "second", s)
                if y1 is None or _ok(latest, k):
                    continue  # y1 failed (recorded; a rerun retries it) or y2 done
                teacher = "text" if y1["teacher"] == "agent" else "agent"
                y1_text = Trajectory.from_dict(y1["trajectory"]).completion
                shown = formatting.build_second_teacher_problem(p.problem, y1_text)
                seconds.append(_job(k, p, teacher_prompt(shown, teacher), teacher, "second", s,
                                    {"first_attempt": y1_text, "first_teacher": y1["teacher"]}))
            latest.update(runner.run(seconds))
    finally:
        runner.close()
    elapsed = time.perf_counter() - t0
    summary = summarize(teacher_records(cfg, with_failed=True))
    summary.update({
        "problems": len(problems),
        "near_duplicates_removed": len(removed),
        "samples_per_problem": cfg.teachers.samples,
        "new_records": runner.counts.written,
        "new_failed": runner.counts.failed,
        "errored_attempts": runner.counts.errored_attempts,
        "seconds": round(elapsed, 2),
        "trajectories_per_minute": round(60 * runner.counts.written / elapsed, 1) if elapsed > 0 else None,
        "path": str(paths.teacher_rollouts),
        "config_hash": chash,
    })
    _check_complete(summary, cfg.teachers.max_failed_fraction)
    return summary


def _check_complete(summary: dict[str, Any], max_failed_fraction: float) -> None:
    """Stage 01 ends with :class:`IncompleteStage` when more rollouts failed than tolerated."""
    check_complete("01", "teacher rollouts", n_failed=summary["failed"], n_total=summary["records"],
                   first_error=(summary["errors"] or [None])[0], max_failed_fraction=max_failed_fraction)


def run_stage0_rollouts(cfg: RunConfig, *, progress: bool = True, chunk_size: int = 64, retries: int = 2,
                        backoff: float = 1.0) -> dict[str, Any]:
    """Text-teacher rollouts of the synthetic stage-0 split (embedded world only): one per problem,
    written to ``RunPaths.stage0_rollouts`` for building S0. Resumable like the teacher rollouts."""
    if cfg.world is None:
        raise ValueError("stage-0 rollouts need the synthetic world (cfg.world is not set)")
    path = RunPaths.of(cfg).stage0_rollouts
    problems = load_source(DataSource(kind="synthetic", split="stage0", n=cfg.world.n_stage0,
                                      families=cfg.world.stage0_families), world=cfg.world)
    chash = rollout_hash(cfg)
    cfg.save(path.parent / "config.yaml")
    store = JsonlStore(path)
    latest = store.latest()
    jobs = []
    for p in problems:
        k = record_key(p.id, "first", 0, chash)
        if not _ok(latest, k):
            jobs.append(_job(k, p, teacher_prompt(p.problem, "text"), "text", "first", 0))
    runner = _Runner(cfg, store, chash=chash, retries=retries, backoff=backoff,
                     bar=progress_bar(len(jobs), "stage-0 traces", progress),
                     tokenizer=load_student_tokenizer(cfg, local_only=True), ledger_role="stage0")
    t0 = time.perf_counter()
    try:
        for chunk in _chunks(jobs, chunk_size):
            runner.run(chunk)
    finally:
        runner.close()
    elapsed = time.perf_counter() - t0
    records = [r for r in store.latest().values() if r.get("config_hash") == chash]
    summary = summarize(records)
    summary.update({"problems": len(problems), "new_records": runner.counts.written,
                    "new_failed": runner.counts.failed, "seconds": round(elapsed, 2), "path": str(path),
                    "trajectories_per_minute": round(60 * runner.counts.written / elapsed, 1)
                    if elapsed > 0 and jobs else None})
    _check_complete(summary, cfg.teachers.max_failed_fraction)
    return summary


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    return progress.bar(total, desc, enabled=enabled and total > 0, unit="trajectories")


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and accuracies of rollout records (latest per key)."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    acc: dict[str, dict[str, float]] = defaultdict(dict)
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    rows: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    tool_use: dict[str, list[bool]] = defaultdict(list)
    for r in ok:
        prob = r["problem"]
        groups[(r["teacher"], r["role"])].append(bool(r["correct"]))
        for level in ("subset", "family"):
            rows[(level, str(prob.get(level)), r["teacher"], r["role"])].append(bool(r["correct"]))
        tool_use[r["teacher"]].append((r.get("trajectory") or {}).get("n_code_calls", 0) > 0)
    for (teacher, role), v in sorted(groups.items()):
        acc[teacher][role] = round(sum(v) / len(v), 4)
    table = [{"level": level, "group": group, "teacher": teacher, "role": role, "n": len(v),
              "accuracy": round(sum(v) / len(v), 4)} for (level, group, teacher, role), v in sorted(rows.items())]
    return {
        "records": len(records),
        "ok": len(ok),
        "failed": len(failed),
        "errors": sorted({str(r.get("error")) for r in failed})[:5],
        "accuracy": dict(acc),
        "accuracy_table": table,
        "tool_use": {k: round(sum(v) / len(v), 4) for k, v in sorted(tool_use.items())},
    }


@stage("01")
def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stage 01: prepare the student (the tiny build), roll out both teachers, and — in the embedded
    world — the stage-0 text-teacher traces. Resumable; returns the three summaries. With
    ``composition.released`` (T1 = the paper's data) there is nothing for the teachers to do."""
    out: dict[str, Any] = {"student": prepare_student(cfg)}
    if cfg.composition.released is not None:  # T1 is the paper's data: no teacher has to answer
        log.info("teacher rollouts skipped: T1 comes from the released data (composition.released)")
        out["teacher_rollouts"] = {"skipped": "composition.released: T1 is the paper's released data"}
    else:
        out["teacher_rollouts"] = run_teacher_rollouts(cfg, progress=progress)
    if cfg.world is not None:
        out["stage0"] = run_stage0_rollouts(cfg, progress=progress)
    return out



# --- for notebook 01 ------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def world_notices() -> Iterator[list[str]]:
    """Collect what the embedded world says while building its splits (e.g. a family that ran out of
    distinct problems, the others filling in: expected, not an error) instead of printing it to
    stderr; notebook 01 shows the lines as information."""
    lines: list[str] = []
    logger = logging.getLogger("dualdistill.world")
    handler, propagate = _Collect(lines), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def status_lines(result: dict[str, Any]) -> list[str]:
    """What :func:`run` did and what it reused, one line per part (notebook 01 shows them)."""
    lines = []
    for name, what in (("teacher_rollouts", "teacher rollouts (y1 and y2)"), ("stage0", "stage-0 traces")):
        part = result.get(name) or {}
        if "skipped" in part:
            lines.append(f"{what}: skipped — {part['skipped']}")
        elif "records" in part:
            new = int(part.get("new_records") or 0)
            lines.append(f"{what}: {part['records']} records — {part['records'] - new} reused from "
                         f"{part.get('path')}, {new} drawn now")
    return lines


if __name__ == "__main__":
    from dualdistill.stages.entry import main

    raise SystemExit(main("01"))
