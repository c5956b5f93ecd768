"""The ``replay`` backend: recorded text traces played back as if generated.

    policy = ReplayPolicy(PolicyConfig(backend="replay"))   # traces from Problem.meta
    policy = ReplayPolicy(PolicyConfig(backend="replay", replay_path="deepmath_r1.jsonl"))

This is what the official code did for the text teacher: DeepMath-103K's ``r1_solution_1..3``
instead of calling DeepSeek-R1. Sample ``i`` of a problem plays field ``replay_fields[i % n]``,
taken from ``Problem.meta`` (the HF loader keeps ``r1_solution_*`` there) or else from the
``replay_path`` JSONL, matched by ``id`` / ``problem_id`` or by the exact problem text
(``problem`` / ``question``).

A raw R1 trace (``[<think>]…</think> answer``) becomes canonical segments — a think block and an
answer block; when the answer part has no ``\\boxed{}`` but the reasoning has one, the last one is
added as ``The answer is \\boxed{…}`` — and the policy returns the rendered text after what the loop
already holds (``context["completion"]``, normally the ``<think>\\n`` prefix).

Only **text traces** are supported: a trace with block tags in it (a recorded agentic trace with
``<code>``) is an error, not replayed — its executor output could not be reproduced live. Traces
are not conditioned on anything: as the second teacher, a replay ignores the first attempt.
Stop strings are honoured where they occur; ``max_new_tokens`` truncates (``finish_reason
"length"``). Tokens are counted with the given tokenizer, else approximately (words and
punctuation marks). No token ids are returned (nothing was sampled).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dualdistill.formats import formatting
from dualdistill.formats.formatting import GENERATION_PREFIX
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy

_APPROX_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])")


class ReplayPolicy(Policy):
    """Plays back recorded traces (see the module docstring)."""

    name = "replay"

    def __init__(self, cfg: Any, *, tokenizer: Any = None, seed: int | None = None) -> None:
        if not cfg.replay_fields:
            raise ValueError("replay policy: replay_fields is empty")
        self.cfg = cfg
        self.fields = list(cfg.replay_fields)
        self._tokenizer = tokenizer  # for counting only; not exposed as `tokenizer` (no token ids)
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_text: dict[str, dict[str, Any]] = {}
        if cfg.replay_path:
            self._load(Path(cfg.replay_path))

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"replay_path not found: {path}")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object")
                for key in ("id", "problem_id"):
                    if rec.get(key) is not None:
                        self.by_id[str(rec[key])] = rec
                for key in ("problem", "question"):
                    if isinstance(rec.get(key), str):
                        self.by_text[rec[key].strip()] = rec

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "fields": list(self.fields),
                "source": self.cfg.replay_path or "Problem.meta (e.g. joined from a DeepMath-103K-schema dataset)"}

    # --- tokens -----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        return len(_APPROX_TOKEN.findall(text))

    def _truncate(self, text: str, n: int) -> str:
        if self._tokenizer is not None:
            ids = self._tokenizer.encode(text, add_special_tokens=False)[:n]
            return self._tokenizer.decode(ids, skip_special_tokens=False)
        matches = list(_APPROX_TOKEN.finditer(text))
        return text[: matches[n - 1].end()] if n > 0 and matches else ""

    # --- traces -----------------------------------------------------------------------------
    def trace(self, problem: Any, sample: int) -> str:
        """The recorded trace for sample ``sample`` of ``problem`` (raises KeyError if none)."""
        name = self.fields[sample % len(self.fields)]
        for source in (problem.meta, self.by_id.get(problem.id), self.by_text.get(problem.problem.strip())):
            if source and isinstance(source.get(name), str) and source[name].strip():
                return source[name]
        raise KeyError(f"no recorded trace {name!r} for problem {problem.id!r} "
                       f"(looked in Problem.meta{' and ' + str(self.cfg.replay_path) if self.cfg.replay_path else ''})")

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return [self._one(req) for req in requests]

    def _one(self, req: GenerationRequest) -> Generation:
        problem = req.context.get("problem")
        if problem is None:
            return Generation("", "error", 0, error="replay policy needs context['problem']")
        sample = int(req.context.get("sample", 0))
        try:
            full = formatting.render(formatting.r1_to_segments(self.trace(problem, sample)))
        except (KeyError, ValueError) as err:
            return Generation("", "error", 0, error=str(err).strip("'\""))
        done = req.context.get("completion", GENERATION_PREFIX)
        if not full.startswith(done):
            return Generation("", "error", 0, error=f"completion of {problem.id!r} diverged from the recorded trace")
        text = full[len(done):]
        extra = {"replay_field": self.fields[sample % len(self.fields)]}
        hits = [(text.find(s), s) for s in req.stop if s and s in text]
        finish, stop = "eos", None
        if hits:
            pos, stop = min(hits)
            text, finish = text[:pos], "stop"
        n = self.count_tokens(text + (stop or ""))
        if n > req.max_new_tokens:
            text = self._truncate(text, req.max_new_tokens)
            return Generation(text, "length", self.count_tokens(text), stop=None, extra=extra)
        return Generation(text, finish, n, stop=stop, extra=extra)
