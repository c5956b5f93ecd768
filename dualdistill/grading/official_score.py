"""The official-comparable score: the verdict of the official ``compute_score`` (``math_utils/utils.py``).

    from dualdistill.grading import official_score
    official_score.score(response, "142")     # the official verdict (a bool); substring matches included
    official_score.verdict(response, "142")   # the same, or None where it cannot be computed in time

Stored in every sample record beside the project's strict grade (:mod:`dualdistill.grading.grader`),
for comparison with the paper's numbers, which this rule produced (DESIGN §7, §11). Never the
project's grader: ``"2"`` is "found" in ``\\boxed{12}``.
"""

from __future__ import annotations

import threading
from typing import Any

from dualdistill.grading.helper_process import shared_pool

_CLOSERS = ("</think>", "</code>", "</answer>", "</executor>")


def _with_thousands(gold: str) -> str:
    """The second spelling of ``gold`` the official scorer looks for: a number that ``float``
    reads, written with thousands separators and without a zero fraction ("1,000", "142" for
    "142.0", "inf" for "infinity"); anything else unchanged."""
    try:
        value = float(gold)
    except ValueError:
        return gold
    return format(int(value), ",") if value.is_integer() else format(value, ",")


def _first_between(text: str, opening: str, closing: str) -> str:
    """What follows the first ``opening``, up to the next ``closing`` or the next ``opening``."""
    rest = text[text.index(opening) + len(opening):]
    for stop in (opening, closing):
        cut = rest.find(stop)
        if cut != -1:
            rest = rest[:cut]
    return rest


def _answer_region(text: str) -> str | None:
    """Where the official scorer looks for the gold string, or None (then only math-verify)."""
    if "<answer>" in text and "</answer>" in text:
        return _first_between(text, "<answer>", "</answer>")
    if "<executor>" in text and "</code>" in text:
        return _first_between(text, "<executor>", "</executor>")
    if "</think>" in text and "<executor>" not in text:
        return text.rsplit("</think>", 1)[1]
    return None


def score(response: str, gold: object) -> bool:
    """The verdict of the official ``compute_score(response, gold)`` (DESIGN §7, §11).

    1. ``gold`` is compared as ``str(gold)`` (``142.0`` stays "142.0").
    2. A response with a ``</code>`` is cut after its last closing tag of any block.
    3. The region: the FIRST answer block when the text has both answer tags; else the FIRST
       executor output when it has ``<executor>`` and ``</code>``; else, without any executor, all
       after the last ``</think>``. True when the gold string, or its thousands-separated spelling,
       is a substring of the region ("2" is found in ``\\boxed{12}``, an empty gold always).
    4. Otherwise math-verify: ``verify(parse(\\boxed{gold}), parse(cut response))`` (gold used as is
       when it already contains ``\\boxed``). Its time limits use SIGALRM, which works only in the
       main thread; elsewhere math-verify runs without them (:func:`verdict` runs it in a helper
       process with a hard deadline there instead).
    ``response`` is the text after ``<｜Assistant｜>`` (official evaluation, self-distillation)."""
    gold_text = str(gold)
    text = _cut(response)
    region = _answer_region(text)
    if region is not None and (gold_text in region or _with_thousands(gold_text) in region):
        return True
    return _math_verify_score(text, gold_text)


def _cut(response: str) -> str:
    if "</code>" in response:
        end = max(response.rfind(c) + len(c) for c in _CLOSERS if c in response)
        return response[:end]
    return response


def _substring_score(response: str, gold: object) -> bool:
    """Steps 1-3 of :func:`score`: the official substring rule alone."""
    gold_text, region = str(gold), _answer_region(_cut(response))
    return region is not None and (gold_text in region or _with_thousands(gold_text) in region)


def _math_verify_score(text: str, gold_text: str) -> bool:
    """Step 4 of :func:`score` on the cut response."""
    from math_verify import parse as mv_parse
    from math_verify import verify as mv_verify

    limits = threading.current_thread() is threading.main_thread()
    gold_expr = gold_text if "\\boxed" in gold_text else "\\boxed{" + gold_text + "}"
    parse_kw: dict[str, Any] = {} if limits else {"parsing_timeout": None}
    verify_kw: dict[str, Any] = {} if limits else {"timeout_seconds": None}
    return bool(mv_verify(mv_parse(gold_expr, **parse_kw), mv_parse(text, **parse_kw), **verify_kw))


HELPER_TIMEOUT = 20.0  # seconds for math-verify in a helper process (its own limits are 5 s + 5 s)


def verdict(response: str, gold: object, *, timeout: float = HELPER_TIMEOUT) -> bool | None:
    """:func:`score`, or None where it raises (math-verify on unusual input) or runs past ``timeout``:
    the official-comparable verdict stored in every sample record beside the project's strict grade.

    Off the main thread (records are graded as trajectories end, in the tool loop's threads)
    math-verify's SIGALRM limits do not work, and an expression such as ``10^(10^12)`` (a student
    copying an insight problem's step count) would have sympy build a number of 10^12 digits — for
    hours. There the math-verify step runs in a helper process (whose main thread has math-verify's
    own limits, as the official code has) and a helper past ``timeout`` is killed: no verdict."""
    try:
        if threading.current_thread() is threading.main_thread() or _substring_score(response, gold):
            return score(response, gold)
        outcome = shared_pool(memory_mb=None).call(_math_verify_score, (_cut(response), str(gold)), timeout=timeout)
        return bool(outcome.value) if outcome.status == "ok" else None
    except Exception:  # a scorer failure must not lose the sample; None = no verdict
        return None
