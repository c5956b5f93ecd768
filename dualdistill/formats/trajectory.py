"""A sampled trajectory: typed segments plus what the engine and the sandbox measured.

This is the record every stage passes on (teacher rollouts, student samples, evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import Segment

FINISH_REASONS = ("answer", "eos", "length", "call_cap", "error")


@dataclass
class Trajectory:
    """One response to one prompt. ``completion`` (the tag text) is ``render(segments)``; for a
    trajectory of the official loop (``meta["text_format"] == "official"``) the official rendering,
    which gives back the official text exactly."""

    problem_id: str
    role: str  # "text", "agent" (teachers), "student", or a model name in evaluation
    prompt: str
    segments: list[Segment]
    finish_reason: str = "answer"
    n_tokens: int = 0  # generated + executor tokens (the budget counts both, as in the paper)
    n_generated_tokens: int = 0
    n_code_calls: int = 0
    n_code_errors: int = 0
    n_code_timeouts: int = 0
    token_ids: list[int] | None = None  # engine token ids of the completion, where given
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def official_text(self) -> bool:
        return self.meta.get("text_format") == "official"

    @property
    def completion(self) -> str:
        return official.render(self.segments) if self.official_text else formatting.render(self.segments)

    @property
    def final_answer(self) -> str | None:
        return formatting.extract_final_answer(self.completion)

    @property
    def used_code(self) -> bool:
        return self.n_code_calls > 0

    @property
    def format_valid(self) -> bool:
        if self.official_text:
            return official.is_valid(self.segments)
        return formatting.is_valid(self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "role": self.role,
            "prompt": self.prompt,
            "segments": [s.to_dict() for s in self.segments],
            "finish_reason": self.finish_reason,
            "n_tokens": self.n_tokens,
            "n_generated_tokens": self.n_generated_tokens,
            "n_code_calls": self.n_code_calls,
            "n_code_errors": self.n_code_errors,
            "n_code_timeouts": self.n_code_timeouts,
            "token_ids": self.token_ids,
            "timings": self.timings,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        try:
            segments = formatting.as_segments(d["segments"])
            return cls(
                problem_id=str(d["problem_id"]),
                role=d["role"],
                prompt=d["prompt"],
                segments=segments,
                finish_reason=d.get("finish_reason", "answer"),
                n_tokens=int(d.get("n_tokens", 0)),
                n_generated_tokens=int(d.get("n_generated_tokens", 0)),
                n_code_calls=int(d.get("n_code_calls", 0)),
                n_code_errors=int(d.get("n_code_errors", 0)),
                n_code_timeouts=int(d.get("n_code_timeouts", 0)),
                token_ids=d.get("token_ids"),
                timings=dict(d.get("timings") or {}),
                meta=dict(d.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed trajectory record: {err!r}") from None
