"""The text side of chat and completion answers: r1 prompts split into turns, reasoning turned into tags,
stop strings applied client-side, the stop a server did not report inferred.

Used by the ``openai`` backend and the ``codeact`` wrapper; pure functions over strings.
"""

from __future__ import annotations

from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment
from dualdistill.rollout.policy import Generation, GenerationRequest


def split_r1_prompt(prompt: str) -> tuple[str | None, str | None, str]:
    """``(system, problem, completion_so_far)`` of an r1-format prompt (inverse of
    :func:`formatting.build_prompt` + completion); ``(None, None, prompt)`` when it has no r1 tags."""
    u = prompt.find(formatting.USER_TAG)
    a = prompt.find(formatting.ASSISTANT_TAG, u + 1) if u != -1 else -1
    if u == -1 or a == -1:
        return None, None, prompt
    system = prompt[:u].removeprefix(formatting.BOS_TOKEN)
    return system, prompt[u + len(formatting.USER_TAG) : a], prompt[a + len(formatting.ASSISTANT_TAG) :]


def problem_text(request: GenerationRequest) -> str | None:
    problem = request.context.get("problem")
    if problem is None:
        return None
    if isinstance(problem, dict):
        return problem.get("problem")
    return getattr(problem, "problem", None)


def reasoning_to_text(reasoning: str | None, content: str | None, finish_reason: str) -> str:
    """Tag text of a chat answer with separate reasoning (DeepSeek ``reasoning_content``).

    A generation cut by the token limit keeps its last block open (no invented closing tags)."""
    content = content or ""
    if not reasoning:
        return content
    if finish_reason == "length" and not content.strip():
        return "<think>\n" + reasoning.strip("\n")
    text = formatting.render([Segment("think", reasoning.strip("\n"))])
    if formatting.TAG_RE.search(content):  # the model wrote its own tags
        return text + content
    if not content.strip():
        return text
    if finish_reason == "length":
        return text + "<answer>\n" + content.strip("\n")
    return text + formatting.render([Segment("answer", content.strip())])


def strip_prefill(text: str, so_far: str) -> str:
    """Cut what the prompt already holds (e.g. the prefilled ``<think>\\n``) off a fresh chat answer."""
    if not so_far:
        return text
    if text.startswith(so_far):
        return text[len(so_far) :]
    head = so_far.strip()
    body = text.lstrip()
    if head and body.startswith(head):
        return body[len(head) :].removeprefix("\n")
    return text


def apply_stops(text: str, stops: list[str]) -> tuple[str, str | None]:
    """``text`` cut before the earliest stop string, and that string (``None`` when none occurs)."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return text, None
    pos, stop = min(hits)
    return text[:pos], stop


def cut_at_stop(gen: Generation, stops: list[str]) -> Generation:
    """Apply stop strings client-side to text the server did not write itself (tags added around
    reasoning, CodeAct fences turned into tags): as if the server had stopped there."""
    text, stop = apply_stops(gen.text, stops)
    if stop is None:
        return gen
    gen.text, gen.finish_reason, gen.stop, gen.token_ids = text, "stop", stop, None
    gen.extra["stop_applied_client_side"] = True
    return gen


def infer_stop(text: str, stops: list[str]) -> str | None:
    """Which closing-tag stop string a server without ``stop_reason`` most likely hit: the one whose
    opening tag is still open at the end of ``text``."""
    for stop in stops:
        if stop.startswith("</") and stop.endswith(">"):
            opening = "<" + stop[2:]
            if text.rfind(opening) > text.rfind(stop):
                return stop
    return None
