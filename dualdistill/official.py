"""Official-format text (StigLidu/DualDistill): its trajectories as segments, and its scorer.

    from dualdistill import official
    segs = official.parse(text)      # text: what follows "<｜Assistant｜>" in official data
    assert official.render(segs) == text
    official.score(response, "142")  # the verdict of the official compute_score (a bool)

Official trajectories are looser than the project's format (DESIGN §11): whitespace around and
inside tags varies, text may sit between blocks, and transition sentences live inside think blocks —
text→code within the first attempt's think block, code→text and verify at the start of a new one
(``"\\n<think>\\nWait, the code is not correct, let's try text reasoning.\\n\\n" + R1 solution``).

Segments (lossless). Each segment from :func:`parse` keeps its exact surroundings in meta:
``meta["pre"]`` (whitespace, opening tag and the whitespace after it) and ``meta["post"]``
(whitespace, closing tag and the whitespace up to the next segment); :func:`render` writes
``pre + text + post`` per segment, so ``render(parse(t)) == t`` for every string ``t``. ``text`` is
stripped of surrounding whitespace.

- **Transition inside a think block**: the block is split into pieces ``think`` / ``transition`` /
  ``think`` (empty pieces left out) sharing ``meta["block"]`` (the block's index among the
  trajectory's blocks); consecutive segments with the same ``block`` render as ONE think block. A
  transition that opens its block (code→text, verify) is the block's first piece; text→code usually
  its last. Every known sentence (:data:`formatting.KNOWN_TRANSITIONS`) in a think block counts.
- Text between blocks is a ``text`` segment (``transition`` when it is exactly a known sentence); a
  stray closing tag is text; an unclosed block (truncated, or cut by the next opening tag) has
  ``meta["open"] = True``.
- ``code`` and ``executor`` segments carry ``meta["status"]`` (``ok | error | timeout | not_run``)
  by the official error rule (:func:`code_statuses`); the executor block that the official loop
  writes after its 10th call has ``meta["cap_notice"] = True``.

Segments without ``pre``/``post`` (built in code) render canonically: ``<kind>\\n{text}\\n</kind>\\n``
for blocks, the pieces of one think block joined by a blank line, bare segments as ``{text}\\n``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from dualdistill.formatting import (
    BLOCK_KINDS,
    KNOWN_TRANSITIONS,
    OFFICIAL_CALL_CAP_NOTICE,
    OFFICIAL_TIMEOUT_OUTPUT,
    Segment,
)

__all__ = ["parse", "render", "score", "code_statuses", "ERROR_MARKERS"]

# The official dataloader's failure markers: an executor text holding one of them is a failed run.
ERROR_MARKERS = ("SyntaxError", "Traceback (most recent call last)", OFFICIAL_TIMEOUT_OUTPUT)
_OPEN_RE = re.compile(r"<(think|code|executor|answer)>")
_CLOSERS = ("</think>", "</code>", "</answer>", "</executor>")


# --- the official error rule -------------------------------------------------------------------

def _status_of(executor_text: str) -> str:
    if OFFICIAL_TIMEOUT_OUTPUT in executor_text:
        return "timeout"
    return "error" if any(m in executor_text for m in ERROR_MARKERS) else "ok"


def _occurrences(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + len(needle))
    return found


def code_statuses(text: str) -> list[str]:
    """Status of the k-th code block of an official trajectory, by the official dataloader's rule.

    The k-th code block is paired with the k-th ``<executor>`` of the text (by order, not by
    position), read up to the next ``</executor>``; it failed (``error``/``timeout``) when that text
    holds one of :data:`ERROR_MARKERS`, and never ran (``not_run``) when there is no such executor.
    One status per ``</code>`` in the text, as the official code counts blocks. (The official
    sampling loop shows stderr instead of stdout whenever a run wrote any, and does not replay such a
    run; the text alone cannot tell, so a bare warning on stderr reads ``ok`` here, as it does for
    the official dataloader, which trains that block.)"""
    starts = _occurrences(text, "<executor>")
    statuses = []
    for k in range(text.count("</code>")):
        end = text.find("</executor>", starts[k]) if k < len(starts) else -1
        statuses.append("not_run" if end == -1 else _status_of(text[starts[k]:end]))
    return statuses


# --- parse / render ------------------------------------------------------------------------------

def _split_ws(chunk: str) -> tuple[str, str, str]:
    """(leading whitespace, core, trailing whitespace) of ``chunk``."""
    core = chunk.strip()
    if not core:
        return chunk, "", ""
    lead = len(chunk) - len(chunk.lstrip())
    return chunk[:lead], core, chunk[lead + len(core):]


def _sentence_re(transitions: Iterable[str]) -> re.Pattern[str] | None:
    sentences = sorted(set(transitions), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, sentences))) if sentences else None


def _block_pieces(kind: str, body: str, closed: bool, block: int,
                  sentences: re.Pattern[str] | None) -> list[Segment]:
    """Segments of one block; a think block with transition sentences becomes several pieces."""
    opening, closing = f"<{kind}>", (f"</{kind}>" if closed else "")
    meta_base: dict[str, Any] = {} if closed else {"open": True}
    matches = list(sentences.finditer(body)) if kind == "think" and sentences else []
    if not matches:
        lead, core, trail = _split_ws(body)
        return [Segment(kind, core, {"pre": opening + lead, "post": trail + closing, **meta_base})]
    pieces: list[Segment] = []
    lead_ws = ""  # whitespace before the first piece

    def add_chunk(chunk: str) -> None:
        nonlocal lead_ws
        lead, core, trail = _split_ws(chunk)
        if core:
            pieces.append(Segment("think", core, {"pre": lead, "post": trail}))
        elif pieces:
            pieces[-1].meta["post"] += chunk
        else:
            lead_ws += chunk

    pos = 0
    for m in matches:
        add_chunk(body[pos:m.start()])
        pieces.append(Segment("transition", m.group(0), {"pre": "", "post": ""}))
        pos = m.end()
    add_chunk(body[pos:])
    for piece in pieces:
        piece.meta.update(block=block, **meta_base)
    pieces[0].meta["pre"] = opening + lead_ws + pieces[0].meta["pre"]
    pieces[-1].meta["post"] += closing
    return pieces


def parse(text: str, *, transitions: Iterable[str] = KNOWN_TRANSITIONS) -> list[Segment]:
    """Segments of an official-format trajectory (any string); the inverse of :func:`render`."""
    known = set(transitions)
    sentences = _sentence_re(known)
    segments: list[Segment] = []
    pending = ""  # text outside blocks (incl. stray closing tags) not yet placed

    def flush() -> None:
        nonlocal pending
        lead, core, trail = _split_ws(pending)
        if core:
            kind = "transition" if core in known else "text"
            segments.append(Segment(kind, core, {"pre": lead, "post": trail}))
        elif segments:
            segments[-1].meta["post"] += pending
        elif pending:  # leading whitespace: kept for the first segment
            return
        pending = ""

    pos, n_blocks = 0, 0
    while True:
        m = _OPEN_RE.search(text, pos)
        if m is None:
            pending += text[pos:]
            break
        pending += text[pos:m.start()]
        flush()
        kind, body_start = m.group(1), m.end()
        close = text.find(f"</{kind}>", body_start)
        nxt = _OPEN_RE.search(text, body_start)
        closed = close != -1 and (nxt is None or close < nxt.start())
        body_end = close if closed else (nxt.start() if nxt else len(text))
        pieces = _block_pieces(kind, text[body_start:body_end], closed, n_blocks, sentences)
        if pending:  # whitespace before the very first block
            pieces[0].meta["pre"] = pending + pieces[0].meta["pre"]
            pending = ""
        segments.extend(pieces)
        n_blocks += 1
        pos = body_end + (len(kind) + 3 if closed else 0)
    flush()
    if pending:  # the text is whitespace only
        segments.append(Segment("text", "", {"pre": pending, "post": ""}))
    _mark_execution(text, segments)
    return segments


def _mark_execution(text: str, segments: list[Segment]) -> None:
    statuses = code_statuses(text)
    codes = [s for s in segments if s.kind == "code"]
    for k, seg in enumerate(codes):
        seg.meta["status"] = statuses[k] if k < len(statuses) else "not_run"
    for seg in segments:
        if seg.kind == "executor":
            seg.meta["status"] = _status_of(seg.text)
            if seg.text == OFFICIAL_CALL_CAP_NOTICE:
                seg.meta["cap_notice"] = True


def _default_pre(segments: list[Segment], i: int) -> str:
    seg, block = segments[i], segments[i].meta.get("block")
    if block is not None:
        return "<think>\n" if i == 0 or segments[i - 1].meta.get("block") != block else ""
    return f"<{seg.kind}>\n" if seg.kind in BLOCK_KINDS else ""


def _default_post(segments: list[Segment], i: int) -> str:
    seg, block = segments[i], segments[i].meta.get("block")
    if block is not None:
        last = i == len(segments) - 1 or segments[i + 1].meta.get("block") != block
        return ("" if seg.meta.get("open") else "\n</think>\n") if last else "\n\n"
    if seg.kind in BLOCK_KINDS:
        return "" if seg.meta.get("open") else f"\n</{seg.kind}>\n"
    return "\n"


def render(segments: Iterable[Segment]) -> str:
    """Official-format text of segments: ``pre + text + post`` each (canonical where meta lacks them)."""
    segs = list(segments)
    parts = []
    for i, seg in enumerate(segs):
        pre, post = seg.meta.get("pre"), seg.meta.get("post")
        parts.append((_default_pre(segs, i) if pre is None else pre) + seg.text
                     + (_default_post(segs, i) if post is None else post))
    return "".join(parts)


# --- the official scorer ---------------------------------------------------------------------------

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
       main thread; elsewhere math-verify runs without them.
    ``response`` is the text after ``<｜Assistant｜>`` (official evaluation, self-distillation)."""
    gold_text = str(gold)
    text = response
    if "</code>" in text:
        end = max(text.rfind(c) + len(c) for c in _CLOSERS if c in text)
        text = text[:end]
    region = _answer_region(text)
    if region is not None and (gold_text in region or _with_thousands(gold_text) in region):
        return True
    from math_verify import parse as mv_parse
    from math_verify import verify as mv_verify

    limits = threading.current_thread() is threading.main_thread()
    gold_expr = gold_text if "\\boxed" in gold_text else "\\boxed{" + gold_text + "}"
    parse_kw: dict[str, Any] = {} if limits else {"parsing_timeout": None}
    verify_kw: dict[str, Any] = {} if limits else {"timeout_seconds": None}
    return bool(mv_verify(mv_parse(gold_expr, **parse_kw), mv_parse(text, **parse_kw), **verify_kw))
