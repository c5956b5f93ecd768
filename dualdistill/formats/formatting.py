"""The trajectory format: every prompt string, tag and transition sentence lives here.

A trajectory is a list of typed :class:`Segment` s. ``render`` turns segments into the tag text of
METHOD §2 and ``parse`` turns tag text back into segments; for any valid segment list
``parse(render(segs)) == segs``, and for canonical text ``render(parse(text)) == text``.

Block kinds (rendered ``<kind>\\n{text}\\n</kind>\\n``): think, code, executor, answer.
Bare kinds (rendered ``{text}\\n``, a single line between blocks): transition, notice, text.
A bare line is parsed as ``transition`` / ``notice`` when it equals a known sentence, else ``text``.

Prompts (:func:`build_prompt`): the project's own styles ``r1`` and ``compact``, and the official
code's ``official`` (training) and ``official-eval`` (sampling, evaluation), byte-identical to it;
:func:`sampling_prompt` is the prompt stages sample and evaluate with for a given training style.
Official-format trajectories are read and written by :mod:`dualdistill.formats.official`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

BLOCK_KINDS = ("think", "code", "executor", "answer")
BARE_KINDS = ("transition", "notice", "text")
KINDS = BLOCK_KINDS + BARE_KINDS

# --- transition sentences (official code's wording; params may override) --------------------
TEXT_TO_CODE = "Wait, use text reasoning is too tedious, let's try code reasoning."
CODE_TO_TEXT = "Wait, the code is not correct, let's try text reasoning."
CODE_TO_TEXT_MAY = "Wait, the code may be incorrect, let's try text reasoning."
VERIFY_WITH_TEXT = "Wait, we can also use text-reasoning as an alternative way to verify the solution."
VERIFY_WITH_CODE = "Wait, we can also use code reasoning as an alternative way to verify the solution."
DEFAULT_TRANSITIONS: dict[str, str] = {
    # key: "<case>:<direction>", case ∈ {fix, verify}, direction ∈ {text_to_code, code_to_text}
    "fix:text_to_code": TEXT_TO_CODE,
    "fix:code_to_text": CODE_TO_TEXT,
    "verify:text_to_code": VERIFY_WITH_CODE,
    "verify:code_to_text": VERIFY_WITH_TEXT,
}
KNOWN_TRANSITIONS = frozenset([*DEFAULT_TRANSITIONS.values(), CODE_TO_TEXT_MAY])

# --- notices written by the environment, never trained on -----------------------------------
CALL_CAP_NOTICE = (
    "The maximum number of code calls has been reached. "
    "No more code can be executed; give the final answer now."
)
KNOWN_NOTICES = frozenset([CALL_CAP_NOTICE])
# what the official loop writes (as an executor block) after its 10th code call, then it opens <answer>
# verbatim from the official code (MIT) for byte-compatibility
OFFICIAL_CALL_CAP_NOTICE = "The code use count has exceeded the limit. Please stop using code."
# the official executor's output for a run past its 3 s limit
# verbatim from the official code (MIT) for byte-compatibility
OFFICIAL_TIMEOUT_OUTPUT = "Error: Code execution timed out."

# --- prompts: the project's own styles ---------------------------------------------------------
# "r1" (the default) is the project's own format: a one-paragraph system text modelled on the
# official one (same tags, same instructions), NOT byte-identical to any official prompt; use the
# "official" styles below for that.
SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The Assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. Put the final answer within \\boxed{}."
)
CODE_INSTRUCTION = (
    " The Assistant can use Python code to help reasoning: code is enclosed within <code> </code> "
    "tags, it is executed, and the executor's feedback is returned within <executor> </executor> "
    "tags. Print what you need to see."
)
# a short system text for small students (the embedded tiny model): the same tags, a fraction of the tokens
COMPACT_SYSTEM_PROMPT = (
    "Solve the problem. Reason within <think> </think>, then give the final answer within "
    "<answer> </answer> as \\boxed{}."
)
COMPACT_CODE_INSTRUCTION = " Python code goes within <code> </code>; its output comes back within <executor> </executor>."
# (system text, code instruction) of the project's own styles. Only these feed the tiny model's
# tokenizer corpus (world.tokenizer_corpus), so adding an official style leaves tiny builds unchanged.
PROMPT_STYLES: dict[str, tuple[str, str]] = {
    "r1": (SYSTEM_PROMPT, CODE_INSTRUCTION),  # the project's own format, the default
    "compact": (COMPACT_SYSTEM_PROMPT, COMPACT_CODE_INSTRUCTION),  # the project's short format
}

# --- prompts: the official code's (StigLidu/DualDistill), see build_prompt ---------------------
# verbatim from the official code (MIT) for byte-compatibility
OFFICIAL_CODE_INSTRUCTION = (
    "Meanwhile, you can use Python code to help you reasoning. The code should be enclosed within <code> </code> "
    "tags. For example, <code> code here </code>.\n"
    "A executor will run the code and provide feedback immediately after the code. The executor feedback should be "
    "enclosed within <executor> </executor> tags.\n"
    "You can use the executor feedback to improve your reasoning.\n"
)
# verbatim from the official code (MIT) for byte-compatibility
OFFICIAL_TRAIN_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\n"
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. \n"
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think> <answer> answer here </answer>.\n\n"
    "The final answer should be enclosed within \\boxed tags, i.e., \\boxed{{answer here}}.\n\n"
    "{code_instruction}\n\n"
    "Do not write text outside the tags."
)
# verbatim from the official code (MIT) for byte-compatibility
OFFICIAL_EVAL_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\n"
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. \n"
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think> <answer> answer here </answer>.\n"
    "The final answer should be enclosed within \\boxed tags, i.e., \\boxed{{answer here}}.\n"
    "{code_instruction}"
)
OFFICIAL_TURN_SEP = "\n\n"  # the official prompts put a blank line before each role tag
OFFICIAL_PROMPT_STYLES = ("official", "official-eval")  # training (sft/dataloader.py), sampling/evaluation
ALL_PROMPT_STYLES = (*PROMPT_STYLES, *OFFICIAL_PROMPT_STYLES)
USER_TAG = "<｜User｜>"
ASSISTANT_TAG = "<｜Assistant｜>"
BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
GENERATION_PREFIX = "<think>\n"  # generation starts inside the first think block
SECOND_TEACHER_INSTRUCTION = (
    "\n\nAnother solver already attempted this problem. Their attempt:\n{attempt}\n\n"
    "Solve the problem with your own strategy."
)
ANSWER_TEMPLATE = "The answer is \\boxed{{{answer}}}"
CODE_STOP = "</code>"

# --- the CodeAct teacher over a chat model (dualdistill.rollout.backends.codeact) ---------------------
CODEACT_SYSTEM_PROMPT = (
    "You are a careful mathematician with a Python interpreter. To run code, write one ```python "
    "code block and stop: it is executed in a persistent Python session and its printed output is "
    "returned to you in the next message. Use code for computation and checking; explain your "
    "reasoning in plain text. When you are done, give the final answer within \\boxed{}."
)
CODEACT_OBSERVATION = "Observation:\n{output}"  # how executor output is shown to the chat model


def build_prompt(problem: str, *, code: bool, bos: bool = True, style: str = "r1") -> str:
    """The student's prompt in ``style`` (one of :data:`ALL_PROMPT_STYLES`); the completion follows it.

    - ``r1`` (default), ``compact``: the project's own formats (:data:`PROMPT_STYLES`), ending in
      ``<｜Assistant｜>``; the completion (``render(segments)``) starts with ``<think>\\n``, which
      the tool loop prefills (:func:`generation_prefix`).
    - ``official``: the official training prompt (``sft/dataloader.py``), ending in
      ``"\\n\\n<｜Assistant｜>"``. The official code has no text-only training prompt (its
      dataloader always fills in the code instruction); ``code=False`` leaves the template's
      instruction slot empty, as the official evaluation does in its no-code mode.
    - ``official-eval``: the official sampling/evaluation prompt (``sft/evaluate.py``,
      ``sft/self_distillation_sampler.py``), ending in ``"<｜Assistant｜><think>\\n"``: the prompt
      already opens the first think block (:func:`prompt_prefill`). ``code=False`` is the official
      no-code mode (empty instruction slot).

    ``bos``: the official code hands its prompt text to a tokenizer that adds BOS itself
    (``tokenizer.encode`` / vLLM with special tokens), so ``bos=True`` puts BOS at the front of the
    text (tokenizing it without special tokens gives the official ids) and ``bos=False`` returns
    exactly the official string.
    """
    start = BOS_TOKEN if bos else ""
    if style in PROMPT_STYLES:
        system_text, code_text = PROMPT_STYLES[style]
        system = system_text + (code_text if code else "")
        return f"{start}{system}{USER_TAG}{problem}{ASSISTANT_TAG}"
    instruction = OFFICIAL_CODE_INSTRUCTION if code else ""
    if style == "official":
        system = OFFICIAL_TRAIN_SYSTEM.format(code_instruction=instruction)
        return f"{start}{system}{OFFICIAL_TURN_SEP}{USER_TAG}{problem}{OFFICIAL_TURN_SEP}{ASSISTANT_TAG}"
    if style == "official-eval":
        system = OFFICIAL_EVAL_SYSTEM.format(code_instruction=instruction)
        return (f"{start}{system}{OFFICIAL_TURN_SEP}{USER_TAG}{problem}{OFFICIAL_TURN_SEP}{ASSISTANT_TAG}"
                f"{prompt_prefill(style)}")
    raise ValueError(f"unknown prompt style {style!r}; known: {sorted(ALL_PROMPT_STYLES)}")


def prompt_prefill(style: str) -> str:
    """The start of the trajectory that a ``style`` prompt already holds: ``<think>\\n`` for
    ``official-eval``, else "". The trajectory text is ``prompt_prefill(style) + completion``."""
    if style not in ALL_PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {sorted(ALL_PROMPT_STYLES)}")
    return GENERATION_PREFIX if style == "official-eval" else ""


def generation_prefix(style: str) -> str:
    """What the tool loop prefills at the start of the completion for a ``style`` prompt:
    :data:`GENERATION_PREFIX` unless the prompt already ends with it (then "").
    ``prompt_prefill(style) + generation_prefix(style) == GENERATION_PREFIX`` for every style."""
    return GENERATION_PREFIX[len(prompt_prefill(style)):]


def sampling_prompt(problem: str, *, code: bool, style: str = "r1") -> str:
    """The prompt a stage hands the tool loop to sample or evaluate a student trained in ``style``.

    The project's styles: ``build_prompt(style)``. ``official`` / ``official-eval``: the official
    evaluation prompt (``official-eval``, as the paper sampled and evaluated) without its trailing
    ``prompt_prefill``; the tool loop prefills :data:`GENERATION_PREFIX`, so the text the engine
    continues is the official request byte for byte."""
    if style in OFFICIAL_PROMPT_STYLES:
        text = build_prompt(problem, code=code, style="official-eval")
        return text[: len(text) - len(prompt_prefill("official-eval"))]
    return build_prompt(problem, code=code, style=style)


LOOP_MODES = ("project", "official")


def loop_mode(style: str) -> str:
    """Which tool loop samples a student of ``style``: the official styles the official evaluation
    loop (``rollout.official_loop``: its requests, executor and texts), the project's styles the
    project's loop."""
    return "official" if style in OFFICIAL_PROMPT_STYLES else "project"


def call_cap_style(style: str) -> str:
    """How the tool loop ends code use after the last allowed call for a student of ``style``: the
    official styles the official way (the notice in an executor block, then ``<answer>``), the
    project's with its own notice line."""
    return "official" if style in OFFICIAL_PROMPT_STYLES else "notice"


def build_second_teacher_problem(problem: str, first_attempt: str) -> str:
    """Problem text shown to the second teacher: the problem and the first teacher's attempt."""
    return problem + SECOND_TEACHER_INSTRUCTION.format(attempt=first_attempt)


def answer_text(answer: str) -> str:
    """Text of an answer block for a final answer."""
    return ANSWER_TEMPLATE.format(answer=answer)


@dataclass
class Segment:
    """One typed piece of a trajectory. ``meta`` (e.g. a code block's execution status) is not
    rendered and does not take part in equality."""

    kind: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r}; expected one of {KINDS}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(kind=d["kind"], text=d["text"], meta=dict(d.get("meta") or {}))


def as_segments(value: Any) -> list[Segment]:
    """Segments of a trajectory given in any of its shapes: a list of Segments or segment dicts, a
    trajectory dict (``{"segments": [...]}``) or an object with a ``segments`` attribute."""
    if isinstance(value, Mapping):
        value = value.get("segments")
    elif hasattr(value, "segments"):
        value = value.segments
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of segments, got {type(value).__name__}")
    out = []
    for i, seg in enumerate(value):
        if isinstance(seg, Segment):
            out.append(seg)
        elif isinstance(seg, Mapping):
            try:
                out.append(Segment.from_dict(seg))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"segment {i}: not a valid segment dict ({err})") from None
        else:
            raise TypeError(f"segment {i}: expected Segment or dict, got {type(seg).__name__}")
    return out


class FormatError(ValueError):
    """A trajectory that breaks the format rules (nesting, answers, bare lines)."""


def render_segment(seg: Segment) -> str:
    if seg.kind in BLOCK_KINDS:
        return f"<{seg.kind}>\n{seg.text}\n</{seg.kind}>\n"
    return f"{seg.text}\n"


def render(segments: Iterable[Segment]) -> str:
    """Tag text of a trajectory (the completion that follows the prompt)."""
    return "".join(render_segment(s) for s in segments)


def segment_spans(segments: list[Segment]) -> list[tuple[int, int, int, int]]:
    """Character spans in ``render(segments)``: (start, end, text_start, text_end) per segment.

    ``start:end`` covers the whole rendered segment (tags included), ``text_start:text_end`` its
    text only. Used by the loss masks, so they never depend on re-decoding tokens."""
    spans, pos = [], 0
    for seg in segments:
        open_len = len(seg.kind) + 3 if seg.kind in BLOCK_KINDS else 0  # "<kind>\n"
        total = len(render_segment(seg))
        spans.append((pos, pos + total, pos + open_len, pos + open_len + len(seg.text)))
        pos += total
    return spans


TAG_RE = re.compile(r"<(/?)(think|code|executor|answer)>")  # a block tag; group 1 "/" for closing, group 2 the kind


def parse(
    text: str,
    *,
    transitions: Iterable[str] = KNOWN_TRANSITIONS,
    notices: Iterable[str] = KNOWN_NOTICES,
    strict: bool = False,
) -> list[Segment]:
    """Segments of tag text; the inverse of :func:`render`.

    Lenient by default (model output): missing newlines around tags are accepted, an unclosed
    final block becomes a segment with ``meta["open"] = True``, stray closing tags become text.
    ``strict=True`` raises :class:`FormatError` on anything ``render`` could not have produced.
    """
    transitions, notices = set(transitions), set(notices)
    segments: list[Segment] = []

    def add_bare(chunk: str) -> None:
        if strict and chunk and not chunk.endswith("\n"):
            raise FormatError(f"bare text must end with a newline: {chunk[-40:]!r}")
        body = chunk[:-1] if chunk.endswith("\n") else chunk
        lines = body.split("\n")
        for line in lines:
            if not line.strip():
                if strict and chunk:
                    raise FormatError("empty bare line")
                continue
            stripped = line.strip()
            if stripped in transitions:
                kind = "transition"
            elif stripped in notices:
                kind = "notice"
            else:
                kind = "text"
            segments.append(Segment(kind, line if strict else stripped))

    pos = 0
    while pos < len(text):
        m = TAG_RE.search(text, pos)
        if m is None:
            add_bare(text[pos:])
            break
        add_bare(text[pos : m.start()])
        kind = m.group(2)
        if m.group(1):  # a stray closing tag
            if strict:
                raise FormatError(f"closing </{kind}> without an opening tag at {m.start()}")
            add_bare(m.group(0))
            pos = m.end()
            continue
        body_start = m.end()
        close = text.find(f"</{kind}>", body_start)
        nxt = TAG_RE.search(text, body_start)
        if nxt is not None and (close == -1 or nxt.start() < close):
            if strict:
                raise FormatError(f"<{nxt.group(2)}> inside <{kind}> at {nxt.start()} (no nesting)")
            # an unclosed block runs into the next tag
            segments.append(Segment(kind, _strip_one_newline(text[body_start : nxt.start()]), {"open": True}))
            pos = nxt.start()
            continue
        if close == -1:
            body = text[body_start:]
            if strict:
                raise FormatError(f"<{kind}> at {m.start()} is never closed")
            segments.append(Segment(kind, _strip_one_newline(body), {"open": True}))
            break
        body = text[body_start:close]
        if strict and not (body.startswith("\n") and body.endswith("\n") and len(body) >= 2):
            raise FormatError(f"<{kind}> block at {m.start()} must be '<{kind}>\\n...\\n</{kind}>'")
        segments.append(Segment(kind, _strip_one_newline(body)))
        pos = close + len(kind) + 3
        if text.startswith("\n", pos):
            pos += 1
        elif strict and pos < len(text):
            raise FormatError(f"</{kind}> must be followed by a newline at {pos}")
    return segments


def _strip_one_newline(body: str) -> str:
    if body.startswith("\n"):
        body = body[1:]
    if body.endswith("\n"):
        body = body[:-1]
    return body


def validate(segments: list[Segment], *, require_answer: bool = True) -> None:
    """Raise :class:`FormatError` unless the trajectory has exactly one final answer, at its end,
    with a ``\\boxed{}``, and no block text contains a tag (no nesting)."""
    for i, seg in enumerate(segments):
        if TAG_RE.search(seg.text):
            raise FormatError(f"segment {i} ({seg.kind}) contains a tag: nesting is not allowed")
        if seg.kind in BARE_KINDS and ("\n" in seg.text or not seg.text.strip()):
            raise FormatError(f"segment {i} ({seg.kind}) must be one non-empty line")
    answers = [i for i, s in enumerate(segments) if s.kind == "answer"]
    if not require_answer and not answers:
        return
    if len(answers) != 1:
        raise FormatError(f"expected exactly one answer block, found {len(answers)}")
    if answers[0] != len(segments) - 1:
        raise FormatError("the answer block must be the last segment")
    if extract_boxed(segments[-1].text) is None:
        raise FormatError("the answer block has no \\boxed{}")


def is_valid(segments: list[Segment]) -> bool:
    try:
        validate(segments)
    except FormatError:
        return False
    return True


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    last = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            last = text[m.end() : i - 1]
    return last


def answer_part(text: str) -> str:
    """The part of a response that holds its final answer: the last ``<answer>`` block, else what
    follows the last ``</think>``, else the whole text."""
    starts = [m.end() for m in re.finditer(r"<answer>", text)]
    if starts:
        end = text.find("</answer>", starts[-1])
        return text[starts[-1] : end if end != -1 else len(text)]
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return text


def extract_final_answer(text: str) -> str | None:
    """The final answer of a response: the last ``\\boxed{}`` of its answer part (METHOD §2).
    Executor output never counts as an answer."""
    part = re.sub(r"<executor>.*?(</executor>|$)", "", answer_part(text), flags=re.S)
    return extract_boxed(part)


def strip_final_answer(segments: list[Segment]) -> list[Segment]:
    """Segments before the final answer block (what follows it is dropped too), for composition."""
    answers = [i for i, s in enumerate(segments) if s.kind == "answer"]
    return list(segments[: answers[-1]]) if answers else list(segments)


def code_calls(segments: list[Segment]) -> int:
    return sum(1 for s in segments if s.kind == "code")


def r1_to_segments(raw: str) -> list[Segment]:
    """Canonical segments (think + answer) of a raw ``<think>…</think> answer`` text trace."""
    text = raw.strip()
    if text.startswith("<think>"):
        text = text[len("<think>"):]
    think, sep, answer = text.partition("</think>")
    think, answer = think.strip(), answer.strip()
    if not sep:  # no end of thinking: the whole trace is reasoning
        think, answer = text.strip(), ""
    bad = TAG_RE.search(think) or TAG_RE.search(answer)
    if bad:
        raise ValueError(f"replay supports text traces only; the trace contains {bad.group(0)!r}")
    if extract_boxed(answer) is None:
        boxed = extract_boxed(think)
        if boxed is not None:
            answer = (answer + "\n" if answer else "") + answer_text(boxed)
    segments = [Segment("think", think)]
    if answer:
        segments.append(Segment("answer", answer))
    return segments
