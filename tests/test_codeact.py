"""The CodeAct teacher: hand-written chat transcripts and OpenHands events → student segments, and
``CodeActPolicy`` driving a scripted chat model through the real tool loop (``dualdistill.rollout.tool_loop``)
with the project's sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings
from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment
from dualdistill.formats.problem import Problem
from dualdistill.rollout.backends.codeact import (
    CHAT_STOPS,
    CodeActPolicy,
    codeact_transcript_to_segments,
    openhands_to_segments,
    output_status,
    segments_to_messages,
)
from dualdistill.rollout.policy import Generation, GenerationRequest, build_policy
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories

TRACEBACK = 'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\nNameError: name \'y\' is not defined'


def kinds(segs: list[Segment]) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in segs]


def test_transcript_to_segments() -> None:
    messages = [
        {"role": "system", "content": "You can run Python."},
        {"role": "user", "content": "What is 6*7 + 1?"},
        {"role": "assistant", "content": "Let me compute the product first.\n\n```python\nx = 6*7\nprint(x)\n```"},
        {"role": "user", "content": "Observation:\n42"},
        {"role": "assistant", "content": "Now add one.\n<code>\nprint(y + 1)\n</code>"},
        {"role": "tool", "content": TRACEBACK},
        {"role": "assistant", "content": "Oops, the variable is x.\n```py\nprint(x + 1)\n```\nThat should work."},
        {"role": "user", "content": "Observation:\n43"},
        {"role": "assistant", "content": "So 6*7 + 1 = 43.\n\nThe answer is \\boxed{43}.\n\nHope this helps!"},
    ]
    segs = codeact_transcript_to_segments(messages)
    assert kinds(segs) == [
        ("think", "Let me compute the product first."),
        ("code", "x = 6*7\nprint(x)"),
        ("executor", "42"),
        ("think", "Now add one."),
        ("code", "print(y + 1)"),
        ("executor", TRACEBACK),
        ("think", "Oops, the variable is x."),  # the words after the code block were never seen run
        ("code", "print(x + 1)"),
        ("executor", "43"),
        ("think", "So 6*7 + 1 = 43."),
        ("answer", "The answer is \\boxed{43}."),  # the pleasantry after the answer is dropped
    ]
    assert [s.meta.get("status") for s in segs if s.kind in ("code", "executor")] == ["ok", "ok", "error", "error", "ok", "ok"]
    formatting.validate(segs)
    assert formatting.parse(formatting.render(segs)) == segs
    assert formatting.extract_final_answer(formatting.render(segs)) == "43"


def test_transcript_edge_cases() -> None:
    messages = [
        {"role": "user", "content": "Problem?"},
        {"role": "assistant", "reasoning_content": "Hidden chain.", "content": "Try.\n```python\nprint(1)\n```\n```python\nprint(2)\n```"},
        {"role": "assistant", "content": "No output came back; "},  # the first block was never run
        {"role": "assistant", "content": "thinking more.\n```python\nwhile True: pass\n```"},
        {"role": "user", "content": "Observation:\nTimeoutError: execution timed out after 3 s"},
        {"role": "user", "content": "Please continue."},  # a nudge, not an observation
        {"role": "assistant", "content": "Give up: \\boxed{7}"},
    ]
    segs = codeact_transcript_to_segments(messages)
    assert kinds(segs) == [
        ("think", "Hidden chain.\n\nTry."),
        ("code", "print(1)"),  # the second block of the same turn is dropped
        ("think", "No output came back;\n\nthinking more."),
        ("code", "while True: pass"),
        ("executor", "TimeoutError: execution timed out after 3 s"),
        ("answer", "Give up: \\boxed{7}"),
    ]
    assert segs[1].meta["status"] == "not_run" and segs[3].meta["status"] == "timeout"
    assert output_status("ValueError: math domain error") == "error"
    assert output_status("3293631") == "ok"


def test_openhands_events_to_segments() -> None:
    events = [
        {"id": 0, "source": "user", "action": "message", "args": {"content": "Compute 2**10 mod 7."}},
        {"id": 1, "source": "agent", "action": "run_ipython",
         "args": {"thought": "I'll use Python.", "code": "print(pow(2, 10, 7))"}},
        {"id": 2, "source": "agent", "observation": "run_ipython", "cause": 1,
         "content": "2\n[Jupyter current working directory: /workspace]\n[Jupyter Python interpreter: /openhands/python]"},
        {"id": 3, "source": "agent", "action": "run", "args": {"command": "ls", "thought": ""}},
        {"id": 4, "source": "agent", "observation": "run", "cause": 3, "content": "file.txt"},
        {"id": 5, "source": "agent", "action": "finish",
         "args": {"final_thought": "2**10 = 1024 and 1024 mod 7 = 2.", "outputs": {"solution": "2"}}},
    ]
    segs = openhands_to_segments(events)
    assert kinds(segs) == [
        ("think", "I'll use Python."),
        ("code", "print(pow(2, 10, 7))"),
        ("executor", "2"),  # Jupyter footers stripped; the shell action and its output skipped
        ("think", "2**10 = 1024 and 1024 mod 7 = 2."),
        ("answer", "The answer is \\boxed{2}"),  # from finish.outputs
    ]
    formatting.validate(segs)


def test_segments_to_messages_round_trip() -> None:
    segs = [Segment("think", "Plan."), Segment("code", "print(42)"), Segment("executor", "42"),
            Segment("think", "Done."), Segment("answer", "The answer is \\boxed{42}")]
    messages = segments_to_messages(segs)
    assert messages == [
        {"role": "assistant", "content": "Plan.\n\n```python\nprint(42)\n```"},
        {"role": "user", "content": "Observation:\n42"},
        {"role": "assistant", "content": "Done.\n\nThe answer is \\boxed{42}"},
    ]
    assert kinds(codeact_transcript_to_segments([{"role": "user", "content": "P"}, *messages])) == kinds(segs)


# --- the policy in the real tool loop ---------------------------------------------------------------
class ScriptedChat:
    """A chat model that answers by turn: code first, then the answer from the observation.
    With ``cut=True`` it stops at the closing fence, as a server honouring CHAT_STOPS does."""

    def __init__(self, cut: bool) -> None:
        self.cut = cut
        self.conversations: list[list[dict[str, Any]]] = []
        self.requests: list[GenerationRequest] = []

    def chat(self, conversations: list[list[dict[str, Any]]], requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for conv, req in zip(conversations, requests, strict=True):
            self.conversations.append(conv)
            self.requests.append(req)
            observations = [m for m in conv if m["content"].startswith("Observation:")]
            if not observations:
                if self.cut:
                    out.append(Generation("I'll compute 6*7.\n```python\nx = 6*7\nprint(x)", "stop", 12, stop=CHAT_STOPS[0]))
                else:
                    out.append(Generation("I'll compute 6*7.\n```python\nx = 6*7\nprint(x)\n```\nIt prints 41.", "eos", 15))
            else:
                value = observations[-1]["content"].split("\n", 1)[1]
                out.append(Generation(f"The output is {value}.\n\nThe answer is \\boxed{{{value}}}.", "eos", 10))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture(scope="module")
def pool() -> Any:
    from dualdistill.config import SandboxConfig
    from dualdistill.sandbox.pool import make_sandbox_pool

    p = make_sandbox_pool(SandboxConfig(workers=1))
    yield p
    p.close()


def test_codeact_policy_in_the_tool_loop(pool: Any) -> None:
    for cut in (True, False):
        chat = ScriptedChat(cut=cut)
        policy = CodeActPolicy(chat)
        problem = Problem(id="p1", problem="What is 6*7?", answer="42", source="test")
        item = RolloutItem(problem=problem, prompt=formatting.build_prompt(problem.problem, code=True), role="first")
        [traj] = generate_trajectories(policy, [item], SamplingSettings(max_code_calls=3, temperature=0.6), budget=400, sandbox_pool=pool, progress=False)
        assert traj.finish_reason == "answer", traj
        assert kinds(traj.segments) == [
            ("think", "I'll compute 6*7."),
            ("code", "x = 6*7\nprint(x)"),
            ("executor", "42"),  # really executed; the model's hallucinated "41" was never used
            ("think", "The output is 42."),
            ("answer", "The answer is \\boxed{42}."),
        ]
        assert traj.n_code_calls == 1
        second = chat.conversations[1]
        assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
        assert second[0]["content"] == formatting.CODEACT_SYSTEM_PROMPT and second[1]["content"] == "What is 6*7?"
        assert second[2]["content"] == "I'll compute 6*7.\n\n```python\nx = 6*7\nprint(x)\n```"
        assert second[3]["content"] == "Observation:\n42"
        assert chat.requests[0].stop == CHAT_STOPS


def test_codeact_policy_length_and_errors() -> None:
    class Cut:
        def chat(self, conversations: Any, requests: Any) -> list[Generation]:
            return [Generation("Thinking about it", "length", 5), Generation("", "error", 0, error="HTTP 500")]

        def count_tokens(self, text: str) -> int:
            return len(text)

    policy = CodeActPolicy(Cut())
    prompt = formatting.build_prompt("P", code=True) + formatting.GENERATION_PREFIX
    cut, err = policy.generate([GenerationRequest(prompt, 5, stop=["</code>"]), GenerationRequest(prompt, 5)])
    assert (cut.text, cut.finish_reason) == ("Thinking about it", "length")  # the think block stays open
    assert err.finish_reason == "error" and err.error == "HTTP 500"


def test_codeact_backend_is_registered() -> None:
    policy = build_policy(PolicyConfig(backend="codeact", base_url="http://127.0.0.1:9/v1", model="m"))
    assert isinstance(policy, CodeActPolicy)
    assert policy.chat_model.cfg.api == "chat" and policy.chat_model.cfg.backend == "openai"
    policy.close()
