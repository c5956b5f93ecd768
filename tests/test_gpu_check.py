"""scripts/gpu_check.sh on a CPU (DEVICE=cpu): every phase of the GPU check — the 7B loaded in NF4 for
QLoRA, QLoRA steps on one long example with the paper params' sft section and the merge, in-process vLLM
on the merged model, trajectories through the asynchronous tool loop, the README table — run with the
7B stand-in and small sizes inside .venv-vllm (vLLM's CPU build next to the training stack, as a GPU
install has them). Plumbing only: the figures a GPU prints are not produced here. Needs .venv-vllm;
without it this test FAILS (never skips)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.vllm
def test_gpu_check_phases_run_on_cpu_with_the_standin(tmp_path: Path) -> None:
    from dualdistill.training.standin import build_standin

    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: run scripts/setup_vllm_cpu.sh")
    model = build_standin(tmp_path / "standin")
    out = tmp_path / "check"
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": str(VLLM_PYTHON), "MODEL": str(model), "OUT": str(out),
           "STEPS": "2", "SEQ_LEN": "600", "TRAJECTORIES": "4", "BUDGET": "48", "GEN_TOKENS": "16",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=900, cwd=REPO, env=env)
    log = run.stdout[-4000:] + run.stderr[-4000:]
    assert run.returncode == 0, log
    res = {p: json.loads((out / "results" / f"{p}.json").read_text()) for p in ("load", "train", "vllm")}
    assert res["load"]["quantization"] == {"linear4bit_layers": 14, "quant_type": "nf4", "double_quant": True,
                                           "compute_dtype": "float32"}
    train = res["train"]
    assert train["steps"] == 2 and train["kept"] == 1 and 500 < train["example_tokens"] <= 600
    assert (out / "S1" / "model.safetensors").is_file() and train["quantization"]["quant_type"] == "nf4"
    vllm = res["vllm"]
    assert vllm["engine"]["max_model_len"] > 48 and vllm["generation"]["requests"] == 4
    assert vllm["tool_loop"]["trajectories"] == 4 and vllm["tool_loop"]["errors"] == 0
    engine = vllm["engine_processes"]  # read from the EngineCore child, which is gone after close
    assert engine["pids"] and engine["rss_gb"] > 0.05 and engine["gone_after_close"]
    ext = json.loads((out / "results" / "extensions.json").read_text())
    assert ext["vllm extensions"]["loaded"] == ["vllm._C"] and ext["bitsandbytes"]["library"] == "libbitsandbytes_cpu.so"
    table = (out / "table.md").read_text()
    for row in ("load the 7B in NF4", "QLoRA SFT, 2 steps", "vLLM start-up", "tool loop, 4 trajectories"):
        assert row in table, table
    assert "gpu_check finished in" in run.stdout and "ok  vllm extensions" in run.stdout
