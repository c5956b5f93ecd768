"""In-process vLLM on the CPU build (inside ``.venv-vllm``): the paper params' engine settings reach the
running engine, and one engine after another never overlap — closing a policy returns only once its
EngineCore child process has exited, before the next engine starts.

The engine section is read from ``params/paper-7b-qlora.yaml`` (``student.extra.engine``: max_num_seqs,
max_num_batched_tokens, gpu_memory_utilization) and read back from the engine's own ``vllm_config``; only
``enforce_eager`` is added for the CPU build. Two engines start one after the other (~1 min each on
2 CPU cores). Needs ``.venv-vllm``; without it this test FAILS (never skips)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_tiny import build_scripted_tiny

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"

SCRIPT = '''
import json, sys
import psutil
from dualdistill.config import PolicyConfig, load_config
from dualdistill.rollout.backends.vllm_local import VLLMPolicy
from dualdistill.rollout.policy import GenerationRequest

def engine(model, seed):
    paper = load_config("params/paper-7b-qlora.yaml").student.extra["engine"]
    cfg = PolicyConfig(backend="vllm", model=model, dtype="float32",
                       extra={"engine": {**paper, "enforce_eager": True}})
    return paper, VLLMPolicy(cfg, seed=seed, max_context=512)

def running(pids):
    """Those of pids still running (an exited child not yet reaped by its parent is a zombie: gone)."""
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out

def read_back(policy):
    vc = policy.engine.vllm_config
    return {"max_num_seqs": vc.scheduler_config.max_num_seqs,
            "max_num_batched_tokens": vc.scheduler_config.max_num_batched_tokens,
            "gpu_memory_utilization": vc.cache_config.gpu_memory_utilization,
            "max_model_len": vc.model_config.max_model_len, "seed": vc.model_config.seed}

def main():
    model = sys.argv[1]
    paper, first = engine(model, 1)
    out = {"paper": paper, "first": read_back(first), "first_pids": first.engine_pids,
           "first_names": [psutil.Process(p).name() for p in first.engine_pids],
           "first_text": first.generate([GenerationRequest("Compute 6*7 with code.\\n", 8, temperature=0.0)])[0].text,
           "first_rss": first.engine_memory()["rss_bytes"]}
    first.close()
    out["first_alive_after_close"] = running(out["first_pids"])
    out["first_left"] = first.engine_left
    _, second = engine(model, 2)
    out["second"] = read_back(second)
    out["second_pids"] = second.engine_pids
    second.close()
    out["second_alive_after_close"] = running(out["second_pids"])
    print("RESULT " + json.dumps(out))

if __name__ == "__main__":  # vLLM starts its EngineCore with spawn here
    main()
'''


@pytest.mark.slow
@pytest.mark.vllm
def test_paper_engine_settings_reach_the_engine_and_engines_do_not_overlap(tmp_path: Path) -> None:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: run scripts/setup_vllm_cpu.sh")
    tiny = build_scripted_tiny(tmp_path / "tiny", trigger=("\n", ".\n"), says="<code>print(42)</code>", tag_tokens=True)
    script = tmp_path / "lifecycle.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([str(VLLM_PYTHON), str(script), str(tiny["dir"])], capture_output=True, text=True,
                          timeout=900, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    r: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    paper = r["paper"]
    assert paper["max_num_seqs"] >= 256 and paper["max_num_batched_tokens"] >= 16384  # sized for the loop and 16k
    for key in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization"):
        assert r["first"][key] == paper[key], (key, r["first"])  # the engine runs with the params' values
        assert r["second"][key] == paper[key], (key, r["second"])
    assert r["first"]["max_model_len"] == 512 and (r["first"]["seed"], r["second"]["seed"]) == (1, 2)
    assert r["first_text"] == "<code>print(42)</code>"
    # the engine lives in child processes; they were recorded, held memory, and were gone after close()
    assert r["first_pids"] and r["second_pids"], r
    assert all(name.startswith("VLLM") for name in r["first_names"]), r["first_names"]  # vLLM's own processes only
    assert sum(r["first_rss"].values()) > 50 * 2**20, r["first_rss"]
    assert r["first_alive_after_close"] == [] and r["first_left"] == []
    assert not set(r["first_pids"]) & set(r["second_pids"])
    assert r["second_alive_after_close"] == []
