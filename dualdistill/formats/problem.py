"""The problem record every stage reads, and the rule that turns a gold answer into a string.

    Problem(id="amc/3", problem="...", answer="142", source="amc")

This module sits below everything else (loaders, the synthetic world, grading): it imports nothing
of the package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class MalformedRecordError(ValueError):
    """A source row without a usable problem or answer."""


@dataclass
class Problem:
    """One problem with its ground truth. ``id`` is stable: the source name plus an index or the
    source's own id. ``subset`` (e.g. computation / insight, a benchmark subject) and ``family``
    (synthetic world) group results; ``meta`` keeps the source's other fields (e.g. recorded R1
    solutions for replay)."""

    id: str
    problem: str
    answer: str  # ground truth as a string ("142", not "142.0"): see normalize_gold
    source: str
    subset: str | None = None
    family: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text_for(self, loop: str) -> str:
        """The problem text a prompt holds: as read from the source for the official loop (the
        official code does not strip it; ``meta["problem_as_read"]``, kept where it differs),
        else the stripped text."""
        return self.meta.get("problem_as_read", self.problem) if loop == "official" else self.problem

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        try:
            return cls(**{k: d[k] for k in ("id", "problem", "answer", "source")},
                       subset=d.get("subset"), family=d.get("family"), meta=dict(d.get("meta") or {}))
        except (KeyError, TypeError) as err:
            raise MalformedRecordError(f"problem record needs id, problem, answer and source: {err!r}") from None


def normalize_gold(value: Any) -> str:
    """Ground truth as a string; floats that are integers lose their ``.0`` (AMC's ``142.0``)."""
    if isinstance(value, bool):
        raise MalformedRecordError(f"answer is a boolean: {value!r}")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        s = value.strip()
        try:
            f = float(s)
            if f.is_integer() and "." in s and s.replace(".", "", 1).lstrip("-").isdigit():
                return str(int(f))
        except ValueError:
            pass
        return s
    raise MalformedRecordError(f"answer has type {type(value).__name__}")
