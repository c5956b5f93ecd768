"""Official-format text (StigLidu/DualDistill): its trajectories as segments, and back.

    from dualdistill.formats import official
    segs = official.parse(text)      # text: what follows "<｜Assistant｜>" in official data
    assert official.render(segs) == text
    placed = official.place_transitions(project_segments)  # transitions where the official data has them
    official.accepted(official.render(placed))              # the official dataloader's format check

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
for blocks (a final answer block ends at ``</answer>``, where the official dataloader cuts), the pieces
of one think block joined by a blank line, bare segments as ``{text}\\n``.

Writing: :func:`place_transitions` turns project-format segments (a transition is a line between
blocks) into the official placement, :func:`validate` checks the official layout (no line outside a
block), :func:`segment_spans` gives the character spans of :func:`render` for the loss masks, and
:func:`accepted` restates the official dataloader's format check (tests compare it with the real one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dualdistill.formats.formatting import (
    BARE_KINDS,
    BLOCK_KINDS,
    CODE_TO_TEXT,
    CODE_TO_TEXT_MAY,
    KNOWN_TRANSITIONS,
    OFFICIAL_CALL_CAP_NOTICE,
    OFFICIAL_TIMEOUT_OUTPUT,
    TEXT_TO_CODE,
    VERIFY_WITH_CODE,
    VERIFY_WITH_TEXT,
    FormatError,
    Segment,
)
from dualdistill.formats.formatting import validate as formatting_validate

__all__ = ["parse", "render", "segment_spans", "place_transitions", "validate", "is_valid", "accepted",
           "code_statuses", "ERROR_MARKERS", "TURN_OVER"]

# The official dataloader's failure markers: an executor text holding one of them is a failed run.
ERROR_MARKERS = ("SyntaxError", "Traceback (most recent call last)", OFFICIAL_TIMEOUT_OUTPUT)
# The sentences before which the official dataloader masks the loss (the first of them in the text;
# the code→text ones only where they open a think block). The verify sentences are not among them.
TURN_OVER = (TEXT_TO_CODE, CODE_TO_TEXT, CODE_TO_TEXT_MAY)
_OPEN_RE = re.compile(r"<(think|code|executor|answer)>")


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
        if seg.meta.get("open"):
            return ""
        final_answer = seg.kind == "answer" and i == len(segments) - 1
        return f"\n</{seg.kind}>" + ("" if final_answer else "\n")
    return "\n"


def _parts(segs: list[Segment]) -> list[tuple[str, str, str]]:
    """(pre, text, post) of every segment, canonical where meta lacks them."""
    out = []
    for i, seg in enumerate(segs):
        pre, post = seg.meta.get("pre"), seg.meta.get("post")
        out.append((_default_pre(segs, i) if pre is None else pre, seg.text,
                    _default_post(segs, i) if post is None else post))
    return out


def render(segments: Iterable[Segment]) -> str:
    """Official-format text of segments: ``pre + text + post`` each (canonical where meta lacks them)."""
    return "".join(pre + text + post for pre, text, post in _parts(list(segments)))


def segment_spans(segments: list[Segment]) -> list[tuple[int, int, int, int]]:
    """Character spans in :func:`render` ``(segments)``: (start, end, text_start, text_end) per
    segment, as :func:`dualdistill.formats.formatting.segment_spans` gives them for the project's rendering.
    ``start:end`` is ``pre + text + post``; a transition that opens a think block owns its ``<think>``."""
    spans, pos = [], 0
    for pre, text, post in _parts(list(segments)):
        start = pos
        pos += len(pre) + len(text) + len(post)
        spans.append((start, pos, start + len(pre), start + len(pre) + len(text)))
    return spans


# --- the official placement of transitions --------------------------------------------------------
_OPENS_BLOCK = {CODE_TO_TEXT: "code_to_text", CODE_TO_TEXT_MAY: "code_to_text", VERIFY_WITH_TEXT: "code_to_text",
                TEXT_TO_CODE: "text_to_code", VERIFY_WITH_CODE: "text_to_code"}


def _direction(seg: Segment) -> str:
    key = str(seg.meta.get("transition", ""))
    if key.endswith(("text_to_code", "code_to_text")):
        return key.rsplit(":", 1)[-1]
    return _OPENS_BLOCK.get(seg.text, "code_to_text")


def place_transitions(segments: Iterable[Segment]) -> list[Segment]:
    """Project-format segments (transitions as bare lines between blocks) with every transition put
    where the official data has it (DESIGN §11):

    - ``code_to_text`` (and the verify sentence after code) opens a new think block: the sentence is
      that block's first piece, and a think segment right after it joins the block
      (``"<think>\\n" + sentence + "\\n\\n" + text-teacher reasoning``);
    - ``text_to_code`` ends the think block before it (the first attempt's), as its last piece; with
      no think block right before it, the sentence gets a think block of its own.

    The direction comes from ``meta["transition"]`` (``"<case>:<direction>"``, set by composition and
    selection), else from the sentence (an unknown sentence opens a block). Other segments are copied
    unchanged; ``meta["block"]`` numbers the think blocks that hold transitions. The input is not
    modified."""
    out: list[Segment] = []
    join_next = None  # block id a following think segment joins
    next_id = 0
    for seg in segments:
        copy = Segment(seg.kind, seg.text, dict(seg.meta))
        if copy.kind == "transition" and copy.meta.get("block") is None:
            if _direction(copy) == "text_to_code" and out and out[-1].kind == "think" and not out[-1].meta.get("open"):
                block = out[-1].meta.setdefault("block", f"t{next_id}")
                join_next = None
            else:
                block = f"t{next_id}"
                join_next = block
            next_id += 1
            copy.meta["block"] = block
        elif copy.kind == "think" and join_next is not None and copy.meta.get("block") is None:
            copy.meta["block"] = join_next
            join_next = None
        else:
            join_next = None
        out.append(copy)
    return _number_blocks(out)


def _number_blocks(segments: list[Segment]) -> list[Segment]:
    """``meta["block"]`` of marked pieces = the index of their block in the trajectory."""
    index, prev = -1, object()
    for seg in segments:
        block = seg.meta.get("block")
        if block is None or block != prev:
            index += 1
        if block is not None:
            seg.meta["block"] = index
        prev = block
    return segments


def validate(segments: list[Segment], *, require_answer: bool = True) -> None:
    """:func:`dualdistill.formats.formatting.validate` for official-format segments: the same rules on
    answers and tags, and the official layout — no line outside a block (a bare segment must be a
    piece of a think block), no unclosed block. What passes renders to text the official
    ``check_format`` accepts (:func:`accepted`); that check is looser — it lets a line through when
    only the answer block follows it."""
    for i, seg in enumerate(segments):
        if seg.meta.get("open"):
            raise FormatError(f"segment {i} ({seg.kind}): unclosed block")
        if seg.kind in BARE_KINDS and seg.meta.get("block") is None:
            raise FormatError(f"segment {i} ({seg.kind}) is a line outside any block: the official format "
                              "has none (a transition belongs in a think block)")
        if seg.kind not in ("think", "transition") and seg.meta.get("block") is not None:
            raise FormatError(f"segment {i} ({seg.kind}) cannot be a piece of a think block")
    pieces = [Segment(s.kind if s.kind in BLOCK_KINDS else "think", s.text) for s in segments]
    formatting_validate(pieces, require_answer=require_answer)


def is_valid(segments: list[Segment], *, require_answer: bool = True) -> bool:
    try:
        validate(segments, require_answer=require_answer)
    except FormatError:
        return False
    return True


def accepted(text: str) -> bool:
    """Whether the official dataloader keeps a trajectory: the rule of its format check
    (``math_utils/format_checking.py``), restated. From the stripped text, consume blocks
    ``<think>`` / ``<code>`` / ``<executor>``: each needs its closing tag, and what lies between its
    opening tag and the first closing tag of its kind may not contain any of those three opening tags.
    At ``<answer>``: accepted iff ``</answer>`` follows and none of the three opening tags does.
    At anything else (text, or the end): accepted iff none of the three opening tags follows."""
    rest = text.strip()
    opening = ("<think>", "<code>", "<executor>")
    while not rest.startswith("<answer>"):
        kind = next((k for k in ("think", "code", "executor") if rest.startswith(f"<{k}>")), None)
        if kind is None:
            return not any(tag in rest for tag in opening)
        close = rest.find(f"</{kind}>")
        if close == -1:
            return False
        if any(tag in rest[len(kind) + 2:close] for tag in opening):
            return False
        rest = rest[close + len(kind) + 3:].strip()
    return "</answer>" in rest and not any(tag in rest for tag in opening)
