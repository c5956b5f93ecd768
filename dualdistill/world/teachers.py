"""Scripted teachers of the synthetic world: a text reasoner and a code agent (METHOD §5).

    policy = build_policy(PolicyConfig(backend="scripted", model="agent"))
    trajs = generate_trajectories(policy, items, SamplingSettings(), budget=1024)

Both are :class:`~dualdistill.rollout.policy.Policy` backends, so they run under the same tool loop as an
LLM: a request carries the text so far and ``context["problem"]`` (its ``meta`` holds the
generator parameters); the teacher plans its whole completion and returns the next chunk up to the
first stop string. The agent writes ``<think>…</think><code>…`` and stops at ``</code>``; the loop
runs the code in the sandbox and calls again, and the agent reads the ``<executor>`` output back
from ``context["completion"]`` to write its answer.

Failure modes (each teacher fails on the other's home ground; on the *either* families both are sound):

- text teacher: sound on insight and either families (a rare misread digit); on computation families it does
  the arithmetic in text and each operation slips with probability ``1-(1-slip_rate)^work``
  (work = digit operations), one wrong digit that propagates through the rest of the work;
- agent: exact programs on computation and either families (rarely a mistyped operand); on insight families
  mostly the natural brute force, sometimes (``clever_prob``) the closed-form formula — both write
  the step count N = 10^(10^E) + r out as a Python number, time out, and the agent guesses.

Randomness comes from the request seed, the problem id, the sample and the role, so a rollout is
deterministic. Options (``PolicyConfig.extra``): ``slip_rate``, ``insight_slip`` (text teacher),
``clever_prob``, ``typo_prob`` (agent).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from dualdistill.formats import formatting
from dualdistill.formats.formatting import CODE_STOP, Segment
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy
from dualdistill.world.families import (
    NearPair,
    PairDifference,
    RepeatingDecimal,
    digit_sum,
    get_family,
    leading_digit_counts,
)

TEACHER_KINDS = ("text", "agent")
DEFAULT_OPTIONS: dict[str, dict[str, float]] = {
    "text": {"slip_rate": 0.011, "insight_slip": 0.04},
    "agent": {"clever_prob": 0.15, "typo_prob": 0.04, "pair_check": 1.0, "pair_typo": 0.0},
}
COMPUTE_THINK = "This needs exact arithmetic, so I compute it with code."
LONG_THINK = "The numbers are long, so I compute it exactly with code."
PAIR_THINK = "I copy both numbers into code and compute the difference."
PAIR_CHECK_THINK = "I copy both numbers into code, check that they agree except in the last digit, and subtract."
_TOKEN_RE = re.compile(r"\d|[A-Za-z]+|[^\sA-Za-z\d]")
_INT_RE = re.compile(r"-?\d+")


# --- slips ------------------------------------------------------------------------------------
class Slips:
    """Arithmetic slips: an operation of ``work`` digit-steps goes wrong w.p. ``1-(1-rate)^work``."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng, self.rate, self.count = rng, rate, 0

    def maybe(self, value: int, work: int) -> int:
        """``value``, or ``value`` with one digit changed (a slip)."""
        if self.rng.random() < 1 - (1 - self.rate) ** max(work, 1):
            self.count += 1
            return wrong_digit(value, self.rng)
        return value

    def maybe_mod(self, value: int, work: int, m: int) -> int:
        """As :meth:`maybe`, for a residue: the slipped value stays a residue below ``m``."""
        out = self.maybe(value, work)
        if out == value:
            return value
        for _ in range(20):
            if out < m:
                return out
            out = wrong_digit(value, self.rng)
        return (value + 1) % m


def wrong_digit(value: int, rng: random.Random) -> int:
    """``value`` with one digit replaced by a different one (never a new leading zero)."""
    s = str(value)
    i = rng.randrange(len(s))
    choices = [c for c in "0123456789" if c != s[i] and not (i == 0 and c == "0" and len(s) > 1)]
    return int(s[:i] + rng.choice(choices) + s[i + 1:])


def _nd(x: int) -> int:
    return len(str(abs(x)))


# --- the text teacher's solutions ------------------------------------------------------------
def _text_modpow(p: dict[str, Any], slips: Slips) -> tuple[list[str], int]:
    a, b, m = p["a"], p["b"], p["m"]
    powers = {1: a % m}
    e = 1
    while 2 * e <= b:
        x = powers[e]
        powers[2 * e] = slips.maybe_mod(x * x % m, _nd(x) ** 2 + _nd(x * x) * _nd(m), m)
        e *= 2
    parts = [e for e in sorted(powers, reverse=True) if b & e]
    lines = [f"I work it out by hand with repeated squaring modulo {m}.",
             "Squares: " + ", ".join(f"{a}^{e} = {v}" for e, v in powers.items()) + "."]
    r = powers[parts[0]]
    if len(parts) > 1:
        lines.append(f"{b} = " + " + ".join(map(str, parts)) + ".")
        steps = []
        for e in parts[1:]:
            y = powers[e]
            new = slips.maybe_mod(r * y % m, _nd(r) * _nd(y) + _nd(r * y) * _nd(m), m)
            steps.append(f"{r} × {y} ≡ {new}")
            r = new
        lines.append("Products: " + ", ".join(steps) + ".")
    lines.append(f"So {a}^{b} mod {m} = {r}.")
    return lines, r


def _text_digit_sum_power(p: dict[str, Any], slips: Slips) -> tuple[list[str], int]:
    a, b = p["a"], p["b"]
    powers = {1: a}
    e = 1
    while 2 * e <= b:
        x = powers[e]
        powers[2 * e] = slips.maybe(x * x, _nd(x) ** 2)
        e *= 2
    lines = ["I multiply it out by hand.",
             ", ".join(f"{a}^{e} = {v}" for e, v in powers.items() if e > 1) + "."]
    parts = [e for e in sorted(powers, reverse=True) if b & e]
    value, done = powers[parts[0]], parts[0]
    for e in parts[1:]:
        y = powers[e]
        new = slips.maybe(value * y, _nd(value) * _nd(y))
        done += e
        lines.append(f"{a}^{done} = {a}^{done - e} × {a}^{e} = {new}.")
        value = new
    total = slips.maybe(sum(int(c) for c in str(value)), 2 * _nd(value))  # adding ~20 digits by hand
    lines.append(f"The digits of {value} add up to {total}.")
    return lines, total


def _text_digit_count(p: dict[str, Any], slips: Slips) -> tuple[list[str], int]:
    n, s = p["N"], p["s"]
    lines = [f"I count the numbers below {n} by their leading digits, then check {n} itself."]
    counts: list[int] = []
    for i, free, need, exact in leading_digit_counts(n, s):
        level = [slips.maybe(c, 12 * _nd(c)) if c else 0 for c in exact]
        head = "First digit" if i == 0 else f"After {str(n)[:i]}, next digit"
        lines.append(f"{head} t = 0 to {len(exact) - 1}, the other {free} digits add up to {need} - t: "
                     f"{', '.join(map(str, level))}.")
        counts += level
    total = slips.maybe(sum(counts), sum(_nd(c) for c in counts))
    if digit_sum(n) == s:
        lines.append(f"{n} itself has digit sum {s}, so it counts too.")
        total += 1
        lines.append(f"Total: {' + '.join(map(str, counts))} + 1 = {total}.")
    else:
        lines.append(f"Total: {' + '.join(map(str, counts))} = {total}.")
    return lines, total


def _last_digit(n: int, rng: random.Random, slip: float) -> int:
    """The last digit of ``n``, misread as a neighbouring digit w.p. ``slip``."""
    return (n + rng.choice((-1, 1))) % 10 if rng.random() < slip else n % 10


def _ends(d: int) -> str:
    """Why N = 10^(10^E) + r ends in ``d``, the last digit of r."""
    return f"The power of ten ends in zeros, so the count ends in {d}"


def _text_round_table(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    d = _last_digit(p["r"], rng, slip)
    seats, seat = [], p["s"]
    for j in range(d + 1):
        seats.append(f"{j}:{seat}")
        seat = (seat + 1) % 10
    answer = int(seats[-1].split(":")[1])
    lines = ["The positions repeat every 10 moves, so only the last digit of the number of moves matters.",
             f"{_ends(d)}.",
             f"Position after j moves: {' '.join(seats)}.",
             f"So it ends at position {answer}."]
    return lines, answer


def _text_repeating_decimal(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    block = RepeatingDecimal.block(p)
    period = len(block)
    d = _last_digit(p["r"], rng, slip)
    place = d % period or period
    answer = int(block[place - 1])
    lines = [f"{p['a']}/{p['den']} repeats the block {block} forever, so only the position mod {period} "
             "matters.",
             f"{_ends(d)}, so it is place {place} of the block.",
             f"Places: {' '.join(f'{i + 1}:{c}' for i, c in enumerate(block))}.",
             f"So the digit is {answer}."]
    return lines, answer


_NOUNS = ("stones", "coins", "matches")


def _text_take_away(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    k = p["k"]
    noun = _NOUNS[p.get("template", 0) % len(_NOUNS)]
    d = _last_digit(p["r"], rng, slip)
    while d % (k + 1) == 0:  # a misread digit that names a losing pile is misread again
        d = rng.randint(1, 9)
    r = d % (k + 1)
    lines = [f"A player facing a multiple of {k + 1} {noun} loses, so the first player should leave a multiple "
             f"of {k + 1}.",
             f"{_ends(d)}, so it leaves remainder {r} when divided by {k + 1}.",
             f"So the first player takes {r}."]
    return lines, r


_SAME_PREFIX = "The two numbers agree in every digit but the last, so only the last digits matter."


def _text_near_difference(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    d = _last_digit(NearPair.pair(p)[0], rng, slip)
    return [_SAME_PREFIX, f"The larger ends in {d} and the smaller in 0.", f"So the difference is {d}."], d


def _text_near_remainder(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    d = _last_digit(NearPair.pair(p)[0], rng, slip)
    return ["The first number is the second plus the difference of their last digits, which is smaller than the "
            "second, so that difference is the remainder.",
            f"The first ends in {d} and the second in 0.", f"So the remainder is {d}."], d


def _text_near_between(p: dict[str, Any], rng: random.Random, slip: float) -> tuple[list[str], int]:
    d = _last_digit(NearPair.pair(p)[0], rng, slip)
    return [_SAME_PREFIX, f"The larger ends in {d} and the smaller in 0, so they are {d} apart.",
            f"So {d} - 1 = {d - 1} integers lie strictly between them."], d - 1


def text_solution(problem: Problem, rng: random.Random, *, slip_rate: float = 0.011,
                  insight_slip: float = 0.04) -> tuple[list[Segment], dict[str, Any]]:
    """The text teacher's completion for a world problem: segments and ``{"answer", "slips"}``."""
    fam, p = get_family(problem.family or ""), problem.meta
    if fam.subset == "computation":
        slips = Slips(rng, slip_rate)
        solver = {"modpow": _text_modpow, "digit_sum_power": _text_digit_sum_power,
                  "digit_count": _text_digit_count}[fam.name]
        lines, answer = solver(p, slips)
        n_slips = slips.count
    else:
        solver = {"round_table": _text_round_table, "repeating_decimal": _text_repeating_decimal,
                  "take_away": _text_take_away, "near_difference": _text_near_difference,
                  "pair_difference": _text_near_difference,
                  "near_remainder": _text_near_remainder, "near_between": _text_near_between}[fam.name]
        lines, answer = solver(p, rng, insight_slip)
        n_slips = int(answer != fam.answer(p))
    segments = [Segment("think", "\n".join(lines)), Segment("answer", formatting.answer_text(str(answer)))]
    return segments, {"answer": answer, "slips": n_slips}


# --- the agent's programs ----------------------------------------------------------------------
@dataclass
class Program:
    think: str
    code: str
    kind: str  # exact | typo | brute | clever


def _typo(p: dict[str, Any], keys: tuple[str, ...], rng: random.Random) -> dict[str, Any]:
    q = dict(p)
    key = rng.choice(keys)
    q[key] = wrong_digit(q[key], rng)
    return q


def pair_program(a: int, b: int, check: bool) -> str:
    """The agent's program for a ``pair_difference`` problem: both numbers in variables, with ``check``
    an assert that they agree except in the last digit (what the problem says), then the difference."""
    assertion = "assert a // 10 == b // 10\n" if check else ""
    return f"a = {a}\nb = {b}\n{assertion}print(a - b)"


def agent_program(problem: Problem, rng: random.Random, *, clever_prob: float = 0.15,
                  typo_prob: float = 0.04, pair_check: float = 1.0, pair_typo: float = 0.0) -> Program:
    """The program the agent writes for a world problem (deterministic given ``rng``). On
    ``pair_difference`` the agent copies the numbers with typo probability ``pair_typo`` (default 0:
    it copies 10-digit numbers exactly) and asserts what it copied with probability ``pair_check``."""
    fam, p = get_family(problem.family or ""), problem.meta
    if isinstance(fam, PairDifference):
        kind = "typo" if rng.random() < pair_typo else "exact"
        a, b = NearPair.pair(p)
        q = _typo({"A": a, "B": b}, ("A", "B"), rng) if kind == "typo" else {"A": a, "B": b}
        check = rng.random() < pair_check
        return Program(PAIR_CHECK_THINK if check else PAIR_THINK, pair_program(q["A"], q["B"], check), kind)
    if fam.subset == "computation":
        kind = "typo" if rng.random() < typo_prob else "exact"
        keys = {"modpow": ("a", "b", "m"), "digit_sum_power": ("a", "b"), "digit_count": ("N", "s")}[fam.name]
        q = _typo(p, keys, rng) if kind == "typo" else p
        code = {
            "modpow": "print(pow({a}, {b}, {m}))",
            "digit_sum_power": "print(sum(int(c) for c in str({a} ** {b})))",
            "digit_count": "print(sum(1 for x in range(1, {N} + 1) if sum(map(int, str(x))) == {s}))",
        }[fam.name].format(**q)
        return Program(COMPUTE_THINK, code, kind)
    if fam.subset == "either":  # both numbers written out in full: a typo is one wrong digit in one of them
        kind = "typo" if rng.random() < typo_prob else "exact"
        a, b = NearPair.pair(p)
        q = _typo({"A": a, "B": b}, ("A", "B"), rng) if kind == "typo" else {"A": a, "B": b}
        code = {"near_difference": "print({A} - {B})", "near_remainder": "print({A} % {B})",
                "near_between": "print({A} - {B} - 1)"}[fam.name].format(**q)
        return Program(LONG_THINK, code, kind)
    clever = rng.random() < clever_prob
    q = {**p, "k1": p.get("k", 0) + 1, "P": len(str(p.get("den", 0))), "N": fam.count_code(p)}
    if fam.name == "round_table":
        if clever:
            return Program("The seat is the start plus the number of moves, mod 10, so I compute that.",
                           "print(({s} + {N}) % 10)".format(**q), "clever")
        return Program("I simulate the moves directly with code.",
                       "seat = {s}\nfor _ in range({N}):\n    seat = (seat + 1) % 10\nprint(seat)".format(**q),
                       "brute")
    if fam.name == "repeating_decimal":
        if clever:
            return Program("The decimal repeats one block, so I index the block with code.",
                           "print(str({a}).zfill({P})[({N} - 1) % {P}])".format(**q), "clever")
        return Program("I run the long division directly with code.",
                       "r = {a}\nfor _ in range({N} - 1):\n    r = r * 10 % {den}\nprint(r * 10 // {den})".format(**q),
                       "brute")
    if fam.name == "take_away":
        if clever:
            return Program("Multiples of {k1} are losing positions, so the move is the remainder.".format(**q),
                           "print(({N}) % {k1})".format(**q), "clever")
        return Program("I solve the game for every pile size with code.",
                       "n = {N}\nwin = [False] * (n + 1)\nfor i in range(1, n + 1):\n"
                       "    win[i] = not all(win[i - t] for t in range(1, min({k}, i) + 1))\n"
                       "print(next(t for t in range(1, {k1}) if not win[n - t]))".format(**q),
                       "brute")
    raise ValueError(f"no agent program for family {fam.name!r}")


def printed_integer(output: str) -> int | None:
    """The integer a program printed (its last output line), or None for errors and timeouts."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    return int(lines[-1]) if lines and len(lines) == 1 and _INT_RE.fullmatch(lines[-1]) else None


def agent_answer(problem: Problem, executor_output: str | None, rng: random.Random) -> tuple[list[Segment], int]:
    """The agent's think + answer after reading its program's output (None: it could not run code)."""
    fam = get_family(problem.family or "")
    value = printed_integer(executor_output) if executor_output is not None else None
    if value is not None:
        return [Segment("think", f"The code printed {value}."),
                Segment("answer", formatting.answer_text(str(value)))], value
    guess = fam.guess(problem.meta, rng)
    if executor_output is None:
        why = "I cannot run code here, so I estimate the answer."
    elif re.search(r"time ?out|timed out|time limit", executor_output, re.I):
        why = "The code did not finish in time, so I estimate the answer."
    else:
        why = "The code failed, so I estimate the answer."
    return [Segment("think", why), Segment("answer", formatting.answer_text(str(guess)))], guess


# --- the policy --------------------------------------------------------------------------------
class ScriptedTeacher(Policy):
    """A scripted text (``kind="text"``) or agentic (``kind="agent"``) teacher."""

    def __init__(self, kind: str, *, tokenizer: Any = None, seed: int = 0, **options: float) -> None:
        if kind not in TEACHER_KINDS:
            raise ValueError(f"scripted teacher model must be one of {TEACHER_KINDS}, got {kind!r}")
        unknown = set(options) - set(DEFAULT_OPTIONS[kind])
        if unknown:
            raise ValueError(f"unknown option(s) for the scripted {kind} teacher: {sorted(unknown)}; "
                             f"known: {sorted(DEFAULT_OPTIONS[kind])}")
        self.kind, self.seed, self._tokenizer = kind, seed, tokenizer
        self.options = {**DEFAULT_OPTIONS[kind], **{k: float(v) for k, v in options.items()}}
        self.name = f"scripted-{kind}"

    # tokens -----------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        return len(_TOKEN_RE.findall(text))

    def _truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        if self._tokenizer is not None:
            enc = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            return text[: offsets[max_tokens - 1][1]] if len(offsets) > max_tokens else text
        matches = list(_TOKEN_RE.finditer(text))
        return text[: matches[max_tokens - 1].end()] if len(matches) > max_tokens else text

    # planning ---------------------------------------------------------------------------------
    def _rng(self, req: GenerationRequest, problem: Problem, tag: str) -> random.Random:
        ctx = req.context
        role = "second" if ctx.get("first_attempt") else "first"
        return random.Random(f"scripted|{self.kind}|{self.seed}|{req.seed}|{problem.id}|"
                             f"{ctx.get('sample', 0)}|{role}|{ctx.get('role', '')}|{tag}")

    def _full_text(self, req: GenerationRequest, problem: Problem, completion: str) -> str:
        """The completion this teacher means to have written once this call is done."""
        if self.kind == "text":
            segments, _ = text_solution(problem, self._rng(req, problem, "text"),
                                        slip_rate=self.options["slip_rate"],
                                        insight_slip=self.options["insight_slip"])
            return formatting.render(segments)
        done = formatting.parse(completion)
        executed = [s for s in done if s.kind == "executor" and not s.meta.get("open")]
        if not any(s.kind == "code" for s in done):
            if CODE_STOP not in req.stop:  # tools are off: answer without code
                segments, _ = agent_answer(problem, None, self._rng(req, problem, "nocode"))
                return formatting.render(segments)
            prog = agent_program(problem, self._rng(req, problem, "program"),
                                 **{k: self.options[k] for k in ("clever_prob", "typo_prob", "pair_check", "pair_typo")})
            return formatting.render([Segment("think", prog.think), Segment("code", prog.code)])
        if not executed:
            raise ValueError("the completion has a code block but no executor output to read")
        segments, _ = agent_answer(problem, executed[-1].text, self._rng(req, problem, "answer"))
        return completion + formatting.render(segments)

    def _one(self, req: GenerationRequest) -> Generation:
        problem = req.context.get("problem")
        if isinstance(problem, dict):
            problem = Problem.from_dict(problem)
        if not isinstance(problem, Problem):
            raise ValueError("request context has no 'problem' (a Problem or its dict)")
        if problem.family is None:
            raise ValueError(f"problem {problem.id!r} is not from the synthetic world (no family)")
        completion = req.context.get("completion")
        if completion is None:  # fall back to the text after the prompt's assistant tag
            completion = req.prompt.rsplit(formatting.ASSISTANT_TAG, 1)[-1]
        if formatting.extract_final_answer(completion) is not None and "</answer>" in completion:
            raise ValueError("the completion already holds a final answer")
        full = self._full_text(req, problem, completion)
        if not full.startswith(completion):
            raise ValueError(f"the completion so far does not continue this teacher's script: {completion[-60:]!r}")
        chunk, finish, stop = full[len(completion):], "eos", None
        hits = [(chunk.find(s), s) for s in req.stop if s and s in chunk]
        if hits:
            pos, stop = min(hits)
            chunk, finish = chunk[:pos], "stop"
        if self.count_tokens(chunk) > req.max_new_tokens:
            chunk, finish, stop = self._truncate(chunk, req.max_new_tokens), "length", None
        return Generation(text=chunk, finish_reason=finish, n_tokens=self.count_tokens(chunk), stop=stop)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for req in requests:
            try:
                out.append(self._one(req))
            except (ValueError, KeyError, TypeError) as err:
                out.append(Generation(text="", finish_reason="error", n_tokens=0, error=f"{self.name}: {err}"))
        return out


def build_scripted_policy(cfg: Any, **kw: Any) -> ScriptedTeacher:
    """Factory for ``policy.BACKENDS["scripted"]``: ``cfg.model`` is ``text`` or ``agent``,
    ``cfg.extra`` holds teacher options; ``tokenizer`` and ``seed`` may come as keywords (other
    keywords that the stage passes to every backend are ignored)."""
    if cfg.model not in TEACHER_KINDS:
        raise ValueError(f"policy.model for the scripted backend must be 'text' or 'agent', got {cfg.model!r}")
    return ScriptedTeacher(cfg.model, tokenizer=kw.get("tokenizer"), seed=int(kw.get("seed") or 0),
                           **dict(cfg.extra or {}))
