"""The records passed between stages, one shape each: teacher rollouts, training examples, samples.

    TrainingExample.build(problem, key=..., prompt=..., segments=..., source="t1", case="01")
    SampleRecord.from_trajectory(traj, key=..., model="S1", ..., correct=True)

Each has ``to_dict`` / ``from_dict`` (JSONL lines) as :class:`~dualdistill.formats.trajectory.Trajectory`
does. Readers that only need a few fields may keep the dicts; writers always go through these types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dualdistill.formats.formatting import Segment, as_segments
from dualdistill.formats.problem import Problem
from dualdistill.formats.trajectory import Trajectory


def _problem_dict(problem: Problem | dict[str, Any]) -> dict[str, Any]:
    return problem.to_dict() if isinstance(problem, Problem) else dict(problem)


@dataclass
class TeacherRecord:
    """One teacher trajectory of stage 01 (y1 or y2 of a problem and sample), graded."""

    key: str
    problem: dict[str, Any]  # Problem.to_dict()
    role: str  # first | second
    teacher: str  # text | agent
    sample: int
    status: str  # ok | failed
    error: str | None
    trajectory: dict[str, Any] | None  # Trajectory.to_dict()
    correct: bool
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherRecord:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


@dataclass
class TrainingExample:
    """One SFT example (T1, T2, a baseline's data, stage 0): prompt + segments, the mask flag, and
    where it came from. Fields a source does not use stay None."""

    key: str
    problem_id: str
    prompt: str
    segments: list[Segment]
    source: str  # t1 | t2 | baseline:<name> | stage0
    mask_until_first_transition: bool = False
    subset: str | None = None
    family: str | None = None
    answer: str | None = None
    sample: int | None = None  # the teacher sample (T1, baselines)
    role: str | None = None  # baselines: the teacher's role (first | second)
    first: str | None = None  # T1: the first teacher; baselines, stage 0: the teacher
    case: str | None = None  # T1: 01 | 11 | 10
    rule: str | None = None  # T2: verify | correct
    gbar: float | None = None  # T2: the problem's ḡ
    student_sample: int | None = None  # T2: which sample of S1
    teacher_solution: int | None = None  # T2: which text-teacher solution
    replay: bool = False  # a T1 example replayed in S2's training data
    text_format: str = "project"  # how the segments render to training text: project | official
    group: str | None = None  # T1: the balancing group it was counted in (composition.balance_by)
    problem_text: str | None = None  # the problem as stated (official export: the "problem" column)

    @classmethod
    def build(cls, problem: Problem | dict[str, Any], **kw: Any) -> TrainingExample:
        """An example of ``problem``: its id, subset, family and answer filled in."""
        p = _problem_dict(problem)
        base = {"problem_id": p["id"], "subset": p.get("subset"), "family": p.get("family"), "answer": p.get("answer"),
                "problem_text": p.get("problem")}
        return cls(**{**base, **kw})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segments"] = [s.to_dict() for s in self.segments]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingExample:
        known = {f.name for f in fields(cls)}
        try:
            kw = {k: v for k, v in d.items() if k in known}
            kw["segments"] = as_segments(d["segments"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"training example {d.get('key', '<no key>')!r}: malformed ({err})") from None


@dataclass
class SampleRecord:
    """One graded sample of a model on a problem (self-distillation and evaluation alike)."""

    key: str
    model: str
    benchmark: str
    budget: str  # the budget's name (eval: S, L; self-distillation: "sd")
    budget_tokens: int
    problem: dict[str, Any]  # Problem.to_dict()
    sample: int
    trajectory: dict[str, Any]  # Trajectory.to_dict()
    correct: bool  # the project's strict grade (grading.grade)
    grade_status: str = "ok"  # grading.GradeResult.status: ok | no_answer | timeout | error
    status: str = "ok"  # failed: the policy failed (finish reason "error")
    error: str | None = None
    final_answer: str | None = None
    format_valid: bool = False
    tools: bool = True
    benchmark_version: str = "custom"
    config_hash: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, seed, ... as sent
    official_correct: bool | None = None  # official_score.verdict: the official compute_score's (None: no verdict)

    @classmethod
    def from_trajectory(cls, traj: Trajectory, *, problem: Problem | dict[str, Any], correct: bool,
                        **kw: Any) -> SampleRecord:
        """A record of ``traj``; a trajectory whose policy failed is ``failed`` and never correct."""
        failed = traj.finish_reason == "error"
        return cls(problem=_problem_dict(problem), trajectory=traj.to_dict(), correct=bool(correct) and not failed,
                   status="failed" if failed else "ok", error=traj.meta.get("error") if failed else None,
                   final_answer=traj.final_answer, format_valid=traj.format_valid, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleRecord:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as err:
            raise ValueError(f"sample record {d.get('key', '<no key>')!r}: malformed ({err})") from None
