"""The world's agent behind an OpenAI-compatible chat endpoint (dualdistill.world.agent_server), played
through the codeact backend and the tool loop, with the server started and stopped by the policy's
``serve`` section (policy.build_policy, server_process.ServerProcess)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings, SandboxConfig
from dualdistill.formats import formatting
from dualdistill.rollout.policy import build_policy
from dualdistill.rollout.server_process import ServerError, group_alive
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
from dualdistill.sandbox.pool import make_sandbox_pool
from dualdistill.world import generate_split
from dualdistill.world.agent_server import OBSERVATION_PREFIX, UnknownProblem, WorldAgent, completion
from dualdistill.world.teachers import agent_program

FENCE_STOP = "\n```\n"


@pytest.fixture(scope="module")
def problems() -> list:
    return generate_split("train", n=6)  # one per family: three computation, three insight


@pytest.fixture(scope="module")
def world_file(problems: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agent") / "agent_world.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    return path


def _chat(problem_text: str, *turns: str) -> list[dict]:
    messages = [{"role": "system", "content": formatting.CODEACT_SYSTEM_PROMPT},
                {"role": "user", "content": problem_text}]
    for i, t in enumerate(turns):
        messages.append({"role": "assistant" if i % 2 == 0 else "user", "content": t})
    return messages


def test_program_turn_stops_at_the_fence_like_a_server(problems: list) -> None:
    agent = WorldAgent(problems, clever_prob=0.0, typo_prob=0.0)
    p = next(p for p in problems if p.subset == "computation")
    out = completion(agent, {"messages": _chat(p.problem), "stop": [FENCE_STOP], "seed": 3}, "world-agent")
    choice = out["choices"][0]
    program = agent_program(p, __import__("random").Random(f"agent-server|3|{p.id}|program"), clever_prob=0.0,
                            typo_prob=0.0)
    assert choice["message"]["content"] == f"{program.think}\n\n```python\n{program.code}"
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", FENCE_STOP)  # as vLLM reports it
    assert out["usage"]["completion_tokens"] > 0


def test_answer_turn_reads_the_observation_and_second_teacher_problems_are_found(problems: list) -> None:
    agent = WorldAgent(problems)
    p = problems[0]
    shown = formatting.build_second_teacher_problem(p.problem, "<think>\nI guess 7.\n</think>\n")
    messages = _chat(shown, "I compute it.\n\n```python\nprint(1)\n```", OBSERVATION_PREFIX + "1234\n")
    text = completion(agent, {"messages": messages, "seed": 0}, "m")["choices"][0]
    assert text["message"]["content"] == "The code printed 1234.\n\nThe answer is \\boxed{1234}"
    assert text["stop_reason"] is None  # end of turn: EOS
    failed = _chat(p.problem, "x\n\n```python\nwhile 1: pass\n```", OBSERVATION_PREFIX + "TimeoutError: timed out")
    guess = completion(agent, {"messages": failed, "seed": 0}, "m")["choices"][0]["message"]["content"]
    assert guess.startswith("The code did not finish in time, so I estimate the answer.") and "\\boxed{" in guess
    cut = completion(agent, {"messages": messages, "max_tokens": 3}, "m")["choices"][0]
    assert (cut["message"]["content"], cut["finish_reason"]) == ("The code printed", "length")
    with pytest.raises(UnknownProblem, match="unknown problem.*'What is 2\\+2\\?'"):
        completion(agent, {"messages": _chat("What is 2+2?")}, "m")


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_codeact_against_the_served_agent_in_the_tool_loop(problems: list, world_file: Path) -> None:
    """The run starts the server (serve), the codeact backend drives it, the tool loop runs its code in the
    sandbox; closing the policy stops the server and every process of its group."""
    cfg = PolicyConfig(backend="codeact", model="world-agent", max_concurrency=4, request_timeout=30,
                       serve={"command": ["{python}", "-m", "dualdistill.world.agent_server", "--problems",
                                          str(world_file), "--model", "world-agent", "--port", "{port}"]})
    policy = build_policy(cfg, seed=0)
    server = policy.served
    pid, port = server.proc.pid, server.port
    assert policy.describe()["chat"]["base_url"] == f"http://127.0.0.1:{port}/v1"
    items = [RolloutItem(problem=p, prompt=formatting.build_prompt(p.problem, code=True), role="agent") for p in problems]
    with contextlib.closing(make_sandbox_pool(SandboxConfig(timeout=1.0, workers=2))) as pool:
        trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=4, temperature=0.6), budget=2048, sandbox_pool=pool, progress=False)
        again = generate_trajectories(policy, items[:2], SamplingSettings(max_code_calls=4, temperature=0.6), budget=2048, sandbox_pool=pool, progress=False)
    policy.close()
    assert not server.is_running() and not group_alive(pid) and not _port_open(port)
    for p, t in zip(problems, trajs, strict=True):
        kinds = [s.kind for s in t.segments]
        assert t.finish_reason == "answer" and kinds[:3] == ["think", "code", "executor"], (p.family, kinds, t.meta)
        assert t.n_code_calls == 1 and t.final_answer is not None
        status = t.segments[1].meta["status"]
        if p.subset == "computation":  # the program ran in the sandbox and its printed value is the answer
            printed = t.segments[2].text.strip()
            assert status == "ok" and t.final_answer == printed
        else:  # writing N = 10^(10^12) + r out fails (time or memory): the agent guesses
            assert status in ("timeout", "error", "killed")
    assert [t.completion for t in again] == [t.completion for t in trajs[:2]]  # deterministic given the seed


def test_a_serve_command_that_dies_is_an_error_naming_it(tmp_path: Path) -> None:
    cfg = PolicyConfig(backend="codeact", model="m", serve={
        "command": [sys.executable, "-c", "import sys; print('no such world'); sys.exit(4)"], "startup_timeout": 20})
    with pytest.raises(ServerError, match="(?s)serve.command.*exited with code 4.*no such world"):
        build_policy(cfg)
    bad = PolicyConfig(backend="codeact", model="m", serve={"command": ["{pyhton}", "-V"]})
    with pytest.raises(ServerError, match="bad placeholder.*pyhton"):
        build_policy(bad)
