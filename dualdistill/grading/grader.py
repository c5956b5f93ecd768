"""The binary grader G of Algorithm 1: is a response's final answer equal to the gold answer?

    from dualdistill.grading.grader import grade, answers_equal, grade_many
    grade(response, "142")                      # True / False, never raises
    answers_equal("\\frac{1}{2}", "0.5")        # gold first
    grade_many(pairs, workers=2)                # [GradeResult(correct, status, pred, detail), ...]

Two separate steps (METHOD §7: never substring search):
1. *extract* — the last ``\\boxed{}`` of the answer part (``<answer>`` block, else after the last
   ``</think>``, else anywhere), via :func:`dualdistill.formats.formatting.extract_final_answer`. A number
   that appears only in the thinking or in an ``<executor>`` output does not count; no answer → False.
2. *compare* — :func:`answers_equal`: both sides are normalised (thousands separators, ``142.0`` vs
   ``142``, degrees, units in ``\\text{}``, ``\\dfrac``, ``\\left(``, ``x=5`` vs ``5``, choice letters,
   word answers, mixed numbers), then a fast exact path decides plain numbers, fractions and words
   (~µs, no sympy); everything else goes to math-verify (``parse`` + ``verify``).

Safety: failures return False and are logged (``GradeConfig(raise_on_error=True)`` re-raises).
Both math-verify steps have time limits. In the main thread they are ``setitimer`` alarms (which
cannot interrupt one long C-level computation, so absurd integer towers such as ``9^{9^{9}}`` are
refused before evaluation); in other threads, where signals cannot be used, the slow path runs in a
helper process that is killed on timeout. :func:`grade_many` grades in a pool of processes with a
hard per-item timeout: a timeout counts as wrong and is reported in ``GradeResult.status``.
Mis-grades found in the wild become rows of ``tests/grading_cases.py``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from dualdistill.formats.formatting import extract_final_answer
from dualdistill.formats.problem import MalformedRecordError, normalize_gold
from dualdistill.grading.helper_process import HelperPool, Outcome, shared_pool

logger = logging.getLogger(__name__)

STATUSES = ("ok", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class GradeConfig:
    """How answers are compared. Frozen: one config, one meaning of "correct"."""

    parse_timeout: float = 3.0  # seconds per math-verify parse (gold and prediction each)
    verify_timeout: float = 5.0  # seconds for math-verify verify
    item_timeout: float = 15.0  # hard cap per item in a helper process (grade_many, threads): killed after
    float_rounding: int = 6  # math-verify: decimals kept when comparing floats
    memory_mb: int | None = 4096  # address-space cap of helper processes (sympy can blow up)
    raise_on_error: bool = False  # re-raise internal errors instead of returning False


DEFAULT_CONFIG = GradeConfig()


@dataclass(frozen=True)
class GradeResult:
    """One graded item. ``status``: ok (compared), no_answer (nothing to extract), timeout (counts as
    wrong), error (internal failure, counts as wrong). ``pred`` is the extracted final answer."""

    correct: bool
    status: str
    pred: str | None = None
    detail: str = ""


class GradingTimeout(BaseException):
    """Raised inside a guarded step when its time is up (a BaseException, so that math-verify's
    ``except Exception`` does not swallow it)."""


# --- extraction ---------------------------------------------------------------------------------
def extract_answer(response: str) -> str | None:
    """The final answer of a response (METHOD §2), or None."""
    return extract_final_answer(response)


def gold_to_str(ground_truth: Any) -> str:
    """Gold answers come as str, int or float (AMC stores 142.0 for the integer 142): the loaders'
    rule (``problem.normalize_gold``), falling back to ``str`` for anything it refuses."""
    if isinstance(ground_truth, float) and not math.isfinite(ground_truth):
        return repr(ground_truth)
    try:
        return normalize_gold(ground_truth)
    except MalformedRecordError:
        return str(ground_truth).strip()


# --- normalisation ------------------------------------------------------------------------------
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|textsf|texttt|mathrm|mathbf|mathit|mbox|hbox|operatorname)"
_UNIT_WORDS = (  # after a value and a space: "15 cm^2", "336 degrees", "5 ways"
    r"(?:square\s+|sq\.?\s*|cubic\s+)?(?:units?|cm|mm|km|meters?|metres?|inches|inch|in|feet|foot|ft|yards?|"
    r"miles?|mph|cents?|dollars?|degrees?|radians?|hours?|minutes?|seconds?|days?|weeks?|months?|years?|"
    r"grams?|kg|pounds?|lbs?|ounces?|liters?|litres?|ml|gallons?|people|persons?|students?|ways|points?|"
    r"percent|times|numbers?|integers?|values?)"
)
_TRAILING_UNIT_RE = re.compile(
    rf"^(.*[\d}}).])(?:\s+{_UNIT_WORDS}|\s*(?:cm|mm|km))\.?(?:\s*\^\s*\{{?\s*[23]\s*\}}?)?$", re.I
)
_TRAILING_TEXT_RE = re.compile(rf"^(.*\S)\s*{_TEXT_CMD}\s*\{{[^{{}}]*\}}(?:\s*\^\s*\{{?\s*[23]\s*\}}?)?$")
_ASSIGN_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*(?:=|\\in(?![A-Za-z]))\s*(?=\S)")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_CHOICE_RE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRAC_ARG = r"(?:\{\s*(\d+)\s*\}|(\d))"
_FRACTION_RE = re.compile(rf"([+-]?)\s*(?:(\d+)\s*)?\\frac\s*{_FRAC_ARG}\s*{_FRAC_ARG}")
_SLASH_RE = re.compile(r"([+-]?)\s*(\d+)\s*/\s*(\d+)")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*(?:\s+[A-Za-z][A-Za-z'\-]*)*")


def _unwrap(s: str, cmd_re: str) -> str:
    """``\\text{abc}`` -> ``abc`` for every command matching ``cmd_re`` (braces balanced)."""
    out, pos = [], 0
    for m in re.finditer(cmd_re + r"\s*\{", s):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[i], 0)
            i += 1
        if depth:
            break
        out.append(s[pos : m.start()])
        out.append(s[m.end() : i - 1])
        pos = i
    out.append(s[pos:])
    return "".join(out)


def normalize_answer(answer: Any) -> str:
    """A canonical string for an answer; equal strings mean equal answers (the converse needs math)."""
    s = gold_to_str(answer)
    s = s.replace("\u2212", "-").replace("\u00a0", " ").replace("\u03c0", "\\pi").replace("°", "^\\circ")
    s = s.strip()
    for _ in range(2):  # math delimiters, possibly nested in a display
        s = re.sub(r"^\$+|\$+$", "", s).strip()
        s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s).strip()
    s = s.replace("\\displaystyle", "").replace("\\$", "").replace("$", "")
    s = re.sub(r"(\d),\\!\s*(?=\d{3})", r"\1", s)  # 10,\!080
    s = s.replace("{,}", "")
    s = re.sub(r"(?<!\\)\\!", "", s)
    s = re.sub(r"(?<!\\)\\[,;: ]|~", " ", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])\s*", "", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", "", s)
    s = s.replace("\\%", "").replace("%", "")
    m = _TRAILING_TEXT_RE.match(s)  # 5.4 \text{ cents}, 15\mbox{ cm}^2: a label after a value
    if m:
        s = m.group(1)
    s = _unwrap(s, _TEXT_CMD).strip()
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    m = _TRAILING_UNIT_RE.match(s)
    if m:
        s = m.group(1).strip()
    m = _ASSIGN_RE.match(s)
    if m and "=" not in s[m.end() :]:
        s = s[m.end() :].strip()
    m = _CHOICE_RE.match(s)
    if m:
        s = m.group(1).upper()
    s = re.sub(r"_\{\s*(\d+)\s*\}", r"_\1", s)  # base subscripts: 4210_{5} -> 4210_5
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s.rstrip(".").strip()


# --- fast exact comparison ----------------------------------------------------------------------
def _as_decimal(s: str) -> Decimal | None:
    if not _NUMBER_RE.fullmatch(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def _as_fraction(s: str) -> Fraction | None:
    """Integers, decimals, ``a/b``, ``\\frac{a}{b}`` and mixed numbers ``1\\frac{4}{5}``."""
    d = _as_decimal(s)
    if d is not None:
        return Fraction(d)
    m = _SLASH_RE.fullmatch(s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        return None if den == 0 else Fraction(-num if m.group(1) == "-" else num, den)
    m = _FRACTION_RE.fullmatch(s)
    if m:
        sign, whole = m.group(1), m.group(2)
        num, den = int(m.group(3) or m.group(4)), int(m.group(5) or m.group(6))
        if den == 0:
            return None
        value = Fraction(num, den) + int(whole or 0)
        return -value if sign == "-" else value
    return None


def _is_word(s: str) -> bool:
    """A word answer (Evelyn, east, even): letters only, at least three of them in a row."""
    return bool(_WORD_RE.fullmatch(s)) and bool(re.search(r"[A-Za-z]{3}", s))


def _fast_equal(gold: str, pred: str) -> bool | None:
    """Decide on normalised strings without sympy; None when math is needed."""
    if not pred:
        return False
    if gold == pred:
        return True
    gd, pd = _as_decimal(gold), _as_decimal(pred)
    if gd is not None and pd is not None:
        return gd == pd
    gf, pf = _as_fraction(gold), _as_fraction(pred)
    if gf is not None and pf is not None:
        if gf == pf:
            return True
        if (gd is None) == (pd is None):  # both exact forms: decided
            return False
        return None  # a rounded decimal against a fraction: math-verify rounds
    if re.fullmatch(r"[A-E]", gold) and re.fullmatch(r"[A-Ea-e]", pred):
        return gold == pred.upper()
    if _is_word(gold) or _is_word(pred):
        def key(x: str) -> str:
            return re.sub(r"[^a-z0-9]", "", x.casefold())

        return key(gold) == key(pred)
    return None


# --- guarded math-verify ------------------------------------------------------------------------
_TOWER_RE = re.compile(r"(\d+)\s*\^\s*\{?\s*\(?\s*(\d+)\s*\^\s*\{?\s*\(?\s*(\d+)")
_POWER_RE = re.compile(r"(\d+)\s*\^\s*\{?\s*(\d+)")
_FACTORIAL_RE = re.compile(r"(\d+)\s*!")


def _too_costly(s: str) -> bool:
    """Integer towers, huge powers and factorials that sympy would evaluate for minutes (a
    C-level computation an in-process alarm cannot interrupt)."""
    for m in _TOWER_RE.finditer(s):
        b, c = int(m.group(2)), int(m.group(3))
        if b > 1 and c * math.log10(b) > 5:  # exponent above 1e5
            return True
    for m in _POWER_RE.finditer(s):
        if len(m.group(2)) > 6:
            return True
    return any(len(m.group(1)) > 5 for m in _FACTORIAL_RE.finditer(s))


_MV: dict[str, Any] = {}


def _math_verify() -> dict[str, Any]:
    if not _MV:
        import math_verify
        import math_verify.grader
        import math_verify.parser

        # we enforce our own timeouts (timeout=None below): silence the "timeout disabled" warning
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        _MV.update(
            parse=math_verify.parse,
            verify=math_verify.verify,
            config=[math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()],
        )
    return _MV


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


REARM_SECONDS = 0.05  # after the first alarm, the timer fires again this often until the step ends


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`GradingTimeout` after ``seconds`` (main thread only; restores an outer timer).

    A signal handler's exception can be swallowed: when the alarm lands while Python runs a finaliser
    (``__del__``, a weakref callback: "Exception ignored in ..."), or in code that catches everything.
    So the timer keeps firing every :data:`REARM_SECONDS` until the exception escapes, and a step that
    ended after its alarm fired is a timeout all the same (it ran past its limit)."""
    if not seconds or seconds <= 0 or not _in_main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    fired: list[bool] = []

    def on_alarm(signum: int, frame: Any) -> None:
        fired.append(True)
        raise GradingTimeout(f"over {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, REARM_SECONDS)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            remaining = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-3), old_interval)
    if fired:  # every alarm was swallowed and the step still ended: it ran past its limit
        raise GradingTimeout(f"over {seconds} s")


def _slow_equal(gold: str, pred: str, config: GradeConfig) -> tuple[bool, str, str]:
    """math-verify on normalised strings, in this thread; returns (equal, status, detail)."""
    if _too_costly(pred) or _too_costly(gold):
        return False, "error", "expression too large to evaluate"
    try:
        mv = _math_verify()
        with _time_limit(config.parse_timeout):
            g = mv["parse"](f"${gold}$", mv["config"], parsing_timeout=None)
        with _time_limit(config.parse_timeout):
            p = mv["parse"](f"${pred}$", mv["config"], parsing_timeout=None)
        if not g or not p:
            return False, "ok", "not parsed"
        with _time_limit(config.verify_timeout):
            ok = mv["verify"](g, p, float_rounding=config.float_rounding, timeout_seconds=None)
        return bool(ok), "ok", ""
    except GradingTimeout as e:
        logger.warning("grading timed out (%s): gold=%r pred=%r", e, gold[:200], pred[:200])
        return False, "timeout", str(e)
    except Exception as e:
        if config.raise_on_error:
            raise
        logger.warning("grading failed (%s: %s): gold=%r pred=%r", type(e).__name__, e, gold[:200],
                       pred[:200])
        return False, "error", f"{type(e).__name__}: {e}"


def _compare(gold: Any, pred: str, config: GradeConfig) -> tuple[bool, str, str]:
    """(equal, status, detail) for a gold answer and an extracted prediction."""
    try:
        g, p = normalize_answer(gold), normalize_answer(pred)
        fast = _fast_equal(g, p)
    except Exception as e:
        if config.raise_on_error:
            raise
        logger.warning("answer normalisation failed: %s: %s", type(e).__name__, e)
        return False, "error", f"{type(e).__name__}: {e}"
    if fast is not None:
        return fast, "ok", ""
    return _compare_normalized(g, p, config)


def _compare_normalized(g: str, p: str, config: GradeConfig) -> tuple[bool, str, str]:
    """math-verify in this thread if it is the main one (alarm timeouts), else in a helper process."""
    if _in_main_thread():
        return _slow_equal(g, p, config)
    pool = shared_pool(memory_mb=config.memory_mb, init=_math_verify)
    return _helper_result(pool.call(_slow_equal, (g, p, config), timeout=config.item_timeout), g, p, config)


def _helper_result(outcome: Outcome, gold: str, pred: str, config: GradeConfig) -> tuple[bool, str, str]:
    """(equal, status, detail) from a helper's outcome; without helpers, in this thread if it is the main one."""
    if outcome.status == "ok":
        return outcome.value
    if outcome.status == "unavailable":
        if _in_main_thread():
            return _slow_equal(gold, pred, config)
        return False, "error", "grading helper process unavailable"
    if outcome.status == "timeout":
        logger.warning("grading timed out (%s): pred=%r", outcome.detail, pred[:200])
        return False, "timeout", outcome.detail
    return False, "error", outcome.detail


# --- public API ---------------------------------------------------------------------------------
def answers_equal(gold: Any, pred: str | None, config: GradeConfig = DEFAULT_CONFIG) -> bool:
    """Is ``pred`` (an extracted answer, e.g. a ``\\boxed{}`` content) equal to ``gold``? Gold first:
    the comparison is not symmetric in edge cases (math-verify's assignments and intervals)."""
    if pred is None:
        return False
    return _compare(gold, pred, config)[0]


def grade_result(response: str, ground_truth: Any, config: GradeConfig = DEFAULT_CONFIG) -> GradeResult:
    """Grade one response with its status (ok / no_answer / timeout / error)."""
    try:
        pred = extract_answer(response)
    except Exception as e:
        if config.raise_on_error:
            raise
        logger.warning("answer extraction failed: %s: %s", type(e).__name__, e)
        return GradeResult(False, "error", None, f"{type(e).__name__}: {e}")
    if pred is None or not pred.strip():
        return GradeResult(False, "no_answer", pred)
    correct, status, detail = _compare(ground_truth, pred, config)
    return GradeResult(correct, status, pred, detail)


def grade(response: str, ground_truth: Any, config: GradeConfig = DEFAULT_CONFIG) -> bool:
    """G(y, a) of Algorithm 1: True iff the response's final answer equals the ground truth."""
    return grade_result(response, ground_truth, config).correct


def grade_many(
    pairs: Iterable[tuple[str, Any]], workers: int | None = None, config: GradeConfig = DEFAULT_CONFIG
) -> list[GradeResult]:
    """Grade (response, ground_truth) pairs; items that need math-verify run in ``workers``
    processes with a hard per-item timeout (``config.item_timeout``). Never raises for an item
    and never hangs: a timeout or a crashed helper gives that item a non-"ok" status.
    ``workers=0`` grades in this process (alarm timeouts in the main thread)."""
    pairs = list(pairs)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    results: list[GradeResult | None] = [None] * len(pairs)
    slow: list[tuple[int, str, str]] = []
    preds: list[str | None] = [None] * len(pairs)
    for i, (response, gold) in enumerate(pairs):
        try:
            pred = extract_answer(response)
            preds[i] = pred
            if pred is None or not pred.strip():
                results[i] = GradeResult(False, "no_answer", pred)
                continue
            g, p = normalize_answer(gold), normalize_answer(pred)
            fast = _fast_equal(g, p)
        except Exception as e:
            if config.raise_on_error:
                raise
            results[i] = GradeResult(False, "error", preds[i], f"{type(e).__name__}: {e}")
            continue
        if fast is None:
            slow.append((i, g, p))
        else:
            results[i] = GradeResult(fast, "ok", pred)
    if slow:
        if workers <= 0:
            outs = {i: _compare_normalized(g, p, config) for i, g, p in slow}
        else:
            with HelperPool(min(workers, len(slow)), memory_mb=config.memory_mb, init=_math_verify) as pool:
                outcomes = pool.map(_slow_equal, [(g, p, config) for _, g, p in slow], timeout=config.item_timeout)
            outs = {i: _helper_result(o, g, p, config) for (i, g, p), o in zip(slow, outcomes, strict=True)}
        for i, (correct, status, detail) in outs.items():
            results[i] = GradeResult(correct, status, preds[i], detail)
    return results  # type: ignore[return-value]
