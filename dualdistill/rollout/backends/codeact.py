"""The agentic teacher over a chat model: a CodeAct loop whose transcript becomes the student's tags.

    chat = OpenAIPolicy(PolicyConfig(backend="openai", api="chat", base_url=..., model="claude-..."))
    teacher = CodeActPolicy(chat)          # a Policy: usable by dualdistill.rollout.tool_loop's tool loop
    segments = codeact_transcript_to_segments(messages)   # a finished chat transcript
    segments = openhands_to_segments(events)              # an OpenHands trajectory (JSON events)

CodeAct (as in OpenHands, the paper's agentic teacher): the chat model writes prose and one Python
block per turn (```python fences, or <code>/<execute_ipython> tags), sees the executor's output as
the next user turn (``formatting.CODEACT_OBSERVATION``), and ends with ``\\boxed{}``. Conversion to
the student's format: prose → ``think``, a turn's first code block → ``code`` (later blocks of the
same turn were never run and are dropped, as are words after it), the observation → ``executor``
(code/executor ``meta["status"]`` from the output: ``error`` for a traceback, ``timeout`` for a
timeout, else ``ok``; ``not_run`` when no observation followed), and the paragraph of the final
turn holding the last ``\\boxed{}`` → ``answer``. Adjacent prose merges into one ``think``.

:class:`CodeActPolicy` plays the same loop through ``dualdistill.rollout.tool_loop``: each request's
completion so far (tags) is turned back into chat turns (think + code → an assistant turn with a
fence, executor → an observation turn), the chat model answers one turn, and the turn is rendered
as tags up to its first code block; stop strings (``</code>``, ``</answer>``) are applied to that
rendering, so the loop executes the code in its own sandbox and continues. ``n_tokens`` is the chat
model's own count for the turn (fences and tags differ by a few tokens).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment
from dualdistill.rollout.backends.chat_text import cut_at_stop, problem_text, split_r1_prompt
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy

_CODE_RE = re.compile(
    r"```[ \t]*(?:python|py|python3|ipython)?[ \t]*\n(?P<fence>.*?)```"
    r"|<(?P<tag>code|execute_ipython)>(?P<tagged>.*?)</(?P=tag)>",
    re.S,
)
_OPEN_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3|ipython)?[ \t]*\n(?P<code>.*)$", re.S)
_ERROR_RE = re.compile(r"Traceback \(most recent call last\)|^\w*(?:Error|Exception)\b.*?:", re.M)
_TIMEOUT_RE = re.compile(r"timed out|TimeoutError|time limit exceeded", re.I)
_OPENHANDS_NOISE = re.compile(r"^\[Jupyter (?:current working directory|Python interpreter):.*\]\s*$", re.M)
OBSERVATION_ROLES = ("user", "tool", "ipython", "function", "observation")
CHAT_STOPS = ["\n```\n"]  # end of a code fence: the model waits for its output


class ChatModel(Protocol):
    """What :class:`CodeActPolicy` needs: raw chat turns (``OpenAIPolicy.chat``) and a token count."""

    def chat(self, conversations: list[list[dict[str, Any]]], requests: list[GenerationRequest]) -> list[Generation]: ...

    def count_tokens(self, text: str) -> int: ...


# --- transcript → segments ------------------------------------------------------------------------
def split_turn(content: str, *, stopped_in_fence: bool = False) -> list[tuple[str, str]]:
    """``[("prose" | "code", text), ...]`` of one assistant turn, in order. With
    ``stopped_in_fence`` (the generation stopped at a closing fence), a trailing unclosed fence is code."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in _CODE_RE.finditer(content):
        pieces.append(("prose", content[pos : m.start()]))
        pieces.append(("code", m.group("fence") if m.group("fence") is not None else m.group("tagged")))
        pos = m.end()
    rest = content[pos:]
    tail = _OPEN_FENCE_RE.search(rest) if stopped_in_fence else None
    if tail:
        pieces += [("prose", rest[: tail.start()]), ("code", tail.group("code"))]
    else:
        pieces.append(("prose", rest))
    return [(k, t.strip("\n") if k == "code" else t.strip()) for k, t in pieces if t.strip()]


def output_status(output: str) -> str:
    """Execution status of a code block judged from its output: ``error`` | ``timeout`` | ``ok``."""
    if _TIMEOUT_RE.search(output):
        return "timeout"
    if _ERROR_RE.search(output):
        return "error"
    return "ok"


def clean_observation(content: str) -> str:
    """Executor text of an observation turn (our prefix and OpenHands' Jupyter footers removed)."""
    prefix = formatting.CODEACT_OBSERVATION.split("{output}")[0]
    text = content.removeprefix(prefix) if content.startswith(prefix) else content
    return _OPENHANDS_NOISE.sub("", text).strip("\n")


def final_answer_split(prose: str) -> tuple[str, str | None]:
    """``(reasoning, answer_paragraph)``: the paragraph holding the last ``\\boxed{}`` is the answer;
    what follows it (pleasantries) is dropped. ``(prose, None)`` without a box."""
    if formatting.extract_boxed(prose) is None:
        return prose, None
    paragraphs = re.split(r"\n\s*\n", prose)
    for i in range(len(paragraphs) - 1, -1, -1):
        if formatting.extract_boxed(paragraphs[i]) is not None:
            return "\n\n".join(paragraphs[:i]).strip(), paragraphs[i].strip()
    return prose, None  # pragma: no cover - a box spanning paragraphs


def turn_to_segments(content: str, *, reasoning: str | None = None, final: bool, first_code_only: bool = True,
                     stopped_in_fence: bool = False) -> list[Segment]:
    """Segments of one assistant turn (see the module docstring)."""
    segs: list[Segment] = [Segment("think", reasoning.strip())] if reasoning and reasoning.strip() else []
    pieces = split_turn(content, stopped_in_fence=stopped_in_fence)
    codes = [i for i, (k, _) in enumerate(pieces) if k == "code"]
    if codes and first_code_only:
        pieces = pieces[: codes[0] + 1]
    for i, (kind, text) in enumerate(pieces):
        if kind == "code":
            segs.append(Segment("code", text))
            continue
        answer = None
        if final and i == len(pieces) - 1 and not codes:
            text, answer = final_answer_split(text)
        if text:
            segs.append(Segment("think", text))
        if answer:
            segs.append(Segment("answer", answer))
    return _merge_think(segs)


def _merge_think(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segs:
        if out and s.kind == "think" and out[-1].kind == "think":
            out[-1] = Segment("think", out[-1].text + "\n\n" + s.text)
        else:
            out.append(s)
    return out


def codeact_transcript_to_segments(messages: list[dict[str, Any]]) -> list[Segment]:
    """Student segments of a CodeAct chat transcript (``[{"role", "content"}, ...]``; system turns
    and user turns that do not answer a code block — the problem, nudges — are skipped)."""
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    segs: list[Segment] = []
    waiting: Segment | None = None  # a code segment whose output has not been seen yet
    for i, m in enumerate(messages):
        role, content = m.get("role"), _content_text(m.get("content"))
        if role == "assistant":
            if waiting is not None:
                waiting.meta["status"] = "not_run"
            turn = turn_to_segments(content, reasoning=m.get("reasoning_content"), final=i == last_assistant)
            segs.extend(turn)
            waiting = turn[-1] if turn and turn[-1].kind == "code" else None
        elif role in OBSERVATION_ROLES and waiting is not None:
            output = clean_observation(content)
            status = output_status(output)
            waiting.meta["status"] = status
            segs.append(Segment("executor", output, {"status": status}))
            waiting = None
    if waiting is not None:
        waiting.meta["status"] = "not_run"
    return _merge_think(segs)


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def openhands_to_segments(events: list[dict[str, Any]]) -> list[Segment]:
    """Student segments of an OpenHands trajectory (its JSON list of events).

    Used: agent ``message`` / ``think`` / ``finish`` (prose; ``finish`` may carry the answer in
    ``final_thought`` or ``outputs``), ``run_ipython`` actions (``thought`` + ``code``) and their
    ``run_ipython`` observations (``content``). Other actions (shell, browsing, file edits) and
    their observations are skipped: the student's tool is Python only."""
    messages: list[dict[str, Any]] = []
    ipython_ids: set[Any] = set()
    for ev in events:
        args = ev.get("args") or {}
        source = ev.get("source")
        if "action" in ev:
            action = ev["action"]
            if source == "user" and action == "message":
                messages.append({"role": "user", "content": args.get("content") or ev.get("message", "")})
            elif source != "agent":
                continue
            elif action == "run_ipython":
                ipython_ids.add(ev.get("id"))
                thought = args.get("thought") or ""
                messages.append({"role": "assistant", "content": f"{thought}\n```python\n{args.get('code', '')}\n```"})
            elif action in ("message", "think"):
                text = args.get("content") or args.get("thought") or ""
                if text:
                    messages.append({"role": "assistant", "content": text})
            elif action == "finish":
                text = args.get("final_thought") or args.get("thought") or ""
                outputs = args.get("outputs") or {}
                answer = outputs.get("solution") or outputs.get("answer")
                if answer is not None and formatting.extract_boxed(text) is None:
                    text = (text + "\n\n" if text else "") + formatting.answer_text(str(answer))
                if text:
                    messages.append({"role": "assistant", "content": text})
        elif ev.get("observation") == "run_ipython" and (ev.get("cause") in ipython_ids or ev.get("cause") is None):
            messages.append({"role": "tool", "content": ev.get("content", "")})
    # a final answer given in an earlier message (before "finish" without one) still counts
    return codeact_transcript_to_segments(messages)


# --- segments → chat turns (for the policy) ----------------------------------------------------------
def segments_to_messages(segments: list[Segment]) -> list[dict[str, str]]:
    """Chat turns of a (partial) trajectory: think/code/bare lines → assistant turns (code in a
    fence), executor → an observation turn."""
    messages: list[dict[str, str]] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            messages.append({"role": "assistant", "content": "\n\n".join(buf)})
            buf.clear()

    for s in segments:
        if s.kind == "executor":
            flush()
            messages.append({"role": "user", "content": formatting.CODEACT_OBSERVATION.format(output=s.text)})
        elif s.kind == "code":
            buf.append(f"```python\n{s.text}\n```")
        elif s.text.strip():
            buf.append(s.text)
    flush()
    return messages


class CodeActPolicy(Policy):
    """A chat model driven CodeAct-style, exposed as a tag-format :class:`Policy` (module docstring).

    ``chat`` is any :class:`ChatModel` (e.g. an ``OpenAIPolicy`` with ``api: chat``);
    ``system_prompt`` defaults to ``formatting.CODEACT_SYSTEM_PROMPT``."""

    name = "codeact"

    def __init__(self, chat: ChatModel, *, system_prompt: str = formatting.CODEACT_SYSTEM_PROMPT) -> None:
        self.chat_model = chat
        self.system_prompt = system_prompt

    def conversation(self, request: GenerationRequest) -> tuple[list[dict[str, str]], list[Segment]]:
        """The chat turns for a request, and the segments of its completion so far."""
        _, problem, so_far = split_r1_prompt(request.prompt)
        if problem is None:
            problem, so_far = problem_text(request) or request.prompt, ""
        done = formatting.parse(so_far)
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": problem}]
        closed = [s for s in done if not s.meta.get("open")]
        return messages + segments_to_messages(closed), done

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        convs, states = [], []
        for r in requests:
            conv, done = self.conversation(r)
            convs.append(conv)
            states.append(done)
        chat_requests = [
            GenerationRequest("", r.max_new_tokens, stop=list(CHAT_STOPS), temperature=r.temperature, seed=r.seed)
            for r in requests
        ]
        replies = self.chat_model.chat(convs, chat_requests)
        return [self._to_tags(r, done, g) for r, done, g in zip(requests, states, replies, strict=True)]

    def _to_tags(self, request: GenerationRequest, done: list[Segment], reply: Generation) -> Generation:
        if reply.finish_reason == "error":
            return reply
        tools = formatting.CODE_STOP in request.stop
        stopped_in_fence = reply.finish_reason == "stop" and reply.stop in CHAT_STOPS
        segs = turn_to_segments(reply.text, reasoning=reply.extra.get("reasoning_content"), final=True,
                                first_code_only=tools, stopped_in_fence=stopped_in_fence)
        text = formatting.render(segs)
        if reply.finish_reason == "length" and text.endswith("\n"):
            last = segs[-1] if segs else None  # cut by the budget: leave the last block open
            if last is not None and last.kind in formatting.BLOCK_KINDS:
                text = text[: -len(f"\n</{last.kind}>\n")]
        # continue an open block of the completion so far (the prefilled "<think>\n")
        if done and done[-1].meta.get("open") and done[-1].kind == "think":
            if text.startswith("<think>\n"):
                text = text[len("<think>\n") :]
                if done[-1].text:
                    text = "\n" + text
            else:
                text = "\n</think>\n" + text
        gen = Generation(text, "eos" if reply.finish_reason != "length" else "length", reply.n_tokens,
                         extra={"chat_text": reply.text, **reply.extra})
        return cut_at_stop(gen, request.stop)

    def count_tokens(self, text: str) -> int:
        return self.chat_model.count_tokens(text)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        describe = getattr(self.chat_model, "describe", None)
        if describe is not None:
            out["chat"] = describe()
        return out

    def close(self) -> None:
        close = getattr(self.chat_model, "close", None)
        if close is not None:
            close()


def build_codeact_policy(cfg: Any, **kw: Any) -> CodeActPolicy:
    """Factory for ``policy.BACKENDS["codeact"]``: the ``openai`` backend in chat mode (same
    fields: ``base_url``, ``model``, ``api_key_env``, retries, concurrency) wrapped in CodeAct."""
    from dualdistill.rollout.backends.openai_api import OpenAIPolicy

    chat_cfg = cfg.model_copy(update={"backend": "openai", "api": "chat"})
    return CodeActPolicy(OpenAIPolicy(chat_cfg, **kw))
