"""The scripted "model" of the simulated inference engine (``bench/sim_engine.py``).

    script = Script(seed=0, median_tokens=200, sigma=1.0, max_calls=10)
    traj, index = identify(prompt)                     # which trajectory, which segment
    seg = script.segment(traj, index, code_allowed=True, open_think=prompt.endswith("<think>\\n"))
    seg.text(max_tokens), seg.n_tokens, seg.stop       # what the engine answers

A trajectory is identified by the problem text between the prompt's user and assistant tags
(:func:`trajectory_key`; so several samples of one problem share one script), its segment by the
number of ``<executor>`` blocks already in the completion after the assistant tag.
Each trajectory makes ``calls`` code calls (seeded, uniform in ``[1, max_calls]``): segment ``k``
< ``calls`` is a think block then ``<code>\\nprint(<n>)\\n`` ending at the ``</code>`` stop; the
segment after the last call is a think block then ``<answer>\\nThe answer is \\boxed{<n>}\\n``
ending at ``</answer>``. Segment lengths in tokens (stop token included) are lognormal with the
given median and sigma, seeded per trajectory and segment, so every loop under test sees the same
work. One token is one whitespace-separated word (:func:`count_tokens`), so text length matches the
token counts the engine reports, and ``/tokenize`` counts executor text the same way.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

USER_TAG = "<｜User｜>"  # the r1 prompt's tags (protocol text, deliberately not imported from the package)
ASSISTANT_TAG = "<｜Assistant｜>"
EXECUTOR_CLOSE = "\n</executor>"  # how the tool loop closes an executor block (the system text has "</executor> ")
THINK_OPEN = "<think>\n"
CODE_STOP = "</code>"
ANSWER_STOP = "</answer>"
FILLER = ("so", "the", "next", "value", "is", "then", "we", "check", "it", "again")


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in the simulator's tokenizer: one per whitespace-separated word."""
    return len(text.split())


def trajectory_key(problem: str) -> str:
    """The key of the trajectory that solves ``problem`` (the problem text as the prompt holds it)."""
    return hashlib.sha256(problem.encode()).hexdigest()[:16]


def identify(prompt: str) -> tuple[str, int]:
    """``(trajectory key, segment index)`` of a request: the key of the problem text between the
    user and assistant tags (without them: of the prompt before its first ``<think>``), and the
    number of executor blocks in the completion after it."""
    cut = prompt.rfind(ASSISTANT_TAG)
    user = prompt.rfind(USER_TAG, 0, cut) if cut >= 0 else -1
    if cut >= 0:
        head = prompt[user + len(USER_TAG):cut] if user >= 0 else prompt[:cut]
        completion = prompt[cut + len(ASSISTANT_TAG):]
    else:
        cut = prompt.find(THINK_OPEN)
        head, completion = (prompt, "") if cut < 0 else (prompt[:cut], prompt[cut:])
    return trajectory_key(head), completion.count(EXECUTOR_CLOSE)


def _rng(*parts: object) -> random.Random:
    blob = "|".join(str(p) for p in parts).encode()
    return random.Random(int.from_bytes(hashlib.sha256(blob).digest()[:8], "little"))


@dataclass(frozen=True)
class Segment:
    """One scripted generation: ``words`` (each with the separator after it) then ``stop``."""

    words: tuple[tuple[str, str], ...]
    stop: str  # the stop string that ends it ("</code>" or "</answer>")
    kind: str  # "code" | "answer"

    @property
    def n_tokens(self) -> int:
        """Tokens when generated to the end: the words plus the stop string's token."""
        return len(self.words) + 1

    def text(self, n_words: int | None = None) -> str:
        """The text of the first ``n_words`` words (all by default), without the stop string."""
        words = self.words if n_words is None else self.words[:n_words]
        return "".join(w + sep for w, sep in words)


@dataclass(frozen=True)
class Script:
    """Seeded per-trajectory scripts (see the module docstring)."""

    seed: int = 0
    median_tokens: float = 200.0
    sigma: float = 1.0
    max_calls: int = 10
    min_calls: int = 1

    def calls(self, traj: str) -> int:
        """Code calls the trajectory makes before it answers."""
        return _rng(self.seed, traj, "calls").randint(self.min_calls, max(self.min_calls, self.max_calls))

    def length(self, traj: str, index: int) -> int:
        """Drawn length in tokens of segment ``index`` (before the structural minimum is applied)."""
        mu = math.log(max(self.median_tokens, 1.0))
        return max(1, round(_rng(self.seed, traj, index, "len").lognormvariate(mu, self.sigma)))

    def value(self, traj: str, index: int) -> int:
        return _rng(self.seed, traj, index, "value").randint(0, 10**6)

    def segment(self, traj: str, index: int, *, code_allowed: bool = True, open_think: bool = False) -> Segment:
        """Segment ``index`` of ``traj``: code while calls are left and allowed, else the answer.
        ``open_think``: the prompt already ends inside a think block (no ``<think>`` written)."""
        is_code = code_allowed and index < self.calls(traj)
        value = self.value(traj, index)
        head = [] if open_think else [("<think>", "\n")]
        if is_code:
            tail = [("</think>", "\n"), ("<code>", "\n"), (f"print({value})", "\n")]
        else:
            tail = [("</think>", "\n"), ("<answer>", "\n"), ("The", " "), ("answer", " "), ("is", " "),
                    (f"\\boxed{{{value}}}", "\n")]
        n_filler = max(1, self.length(traj, index) - 1 - len(head) - len(tail))  # one token is the stop
        filler = [(FILLER[i % len(FILLER)], "\n" if i == n_filler - 1 else " ") for i in range(n_filler)]
        return Segment(tuple(head + filler + tail), CODE_STOP if is_code else ANSWER_STOP, "code" if is_code else "answer")

    def trajectory_tokens(self, traj: str) -> int:
        """Tokens the whole scripted trajectory generates (no budget cut; first segment opens inside
        ``<think>``), for planning step times."""
        n = self.calls(traj)
        return sum(self.segment(traj, k, open_think=k == 0).n_tokens for k in range(n + 1))
