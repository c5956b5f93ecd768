#!/usr/bin/env bash
# What only a GPU can check, in one command (about 10 minutes on one 80-141 GB GPU), printing a table for the
# README's "GPU memory and time" section:
#   1. load DeepSeek-R1-Distill-Qwen-7B in NF4 (double quantisation), as QLoRA SFT does: time, memory;
#   2. 20 QLoRA optimizer steps on one 16,384-token example with the sft section of params/paper-7b-qlora.yaml
#      (LoRA r 64 on all linear layers, gradient checkpointing, bf16), peak memory printed; merge into a plain model;
#   3. vLLM (in-process, the paper params' backend and engine arguments) loads the merged model and generates;
#   4. 64 trajectories through the asynchronous tool loop (budget 4096, at most 10 code calls, the sandbox pool).
#   0. first, in seconds: every compiled extension loads and runs one op (scripts/gpu_extensions.py: torch's CUDA,
#      vLLM's kernels built for the same CUDA major, vllm._C, bitsandbytes' CUDA library); a broken install stops here.
# Each phase is its own process (memory is freed between them); results in $OUT/results/*.json, table in $OUT/table.md.
# vLLM's memory is read per process of its EngineCore child (NVML), not from the parent's torch counters.
#
#   scripts/gpu_check.sh extensions                        # step 0 only (make setup-gpu runs it)
#
#   python -m pip install --index-url https://pypi.org/simple -e ".[gpu,dev]"   # docs/GPU.md: one CUDA major (13)
#   scripts/gpu_check.sh                                   # the hub model (hub access or a warm HF cache)
#   MODEL=/models/DeepSeek-R1-Distill-Qwen-7B scripts/gpu_check.sh
#   STEPS=20 SEQ_LEN=16384 TRAJECTORIES=64 BUDGET=4096 OUT=outputs/gpu_check scripts/gpu_check.sh
#
# DEVICE=cpu runs the same phases on a CPU with small sizes (plumbing only: tests/test_gpu_check.py runs it
# inside .venv-vllm with the 7B stand-in); its figures mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
MODEL="${MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-7B}"
OUT="${OUT:-outputs/gpu_check}"
DEVICE="${DEVICE:-cuda}"
SIZES=(--steps "${STEPS:-20}" --seq-len "${SEQ_LEN:-16384}" --trajectories "${TRAJECTORIES:-64}"
       --budget "${BUDGET:-4096}" --gen-tokens "${GEN_TOKENS:-512}")
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DEVICE" = cpu ]; then export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"; fi  # GiB, CPU build

if [ "$DEVICE" = cuda ]; then
    command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this check needs an NVIDIA GPU" >&2; exit 1; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
start=$(date +%s)
echo "== gpu_check: extensions"
"$PY" scripts/gpu_extensions.py --device "$DEVICE" --out "$OUT" \
    || { echo "gpu_check: a compiled extension is broken (above); reinstall with the line in docs/GPU.md" >&2; exit 1; }
if [ "${1:-}" = extensions ]; then exit 0; fi
phase() {
    local t0=$(date +%s)
    echo "== gpu_check: $1"
    "$PY" scripts/gpu_check.py "$@" --out "$OUT" --device "$DEVICE" "${SIZES[@]}"
    echo "== $1 done in $(( $(date +%s) - t0 )) s"
}
phase load --model "$MODEL"
phase train --model "$MODEL"
phase vllm --model "$OUT/S1"
"$PY" scripts/gpu_check.py table --out "$OUT"
echo "gpu_check finished in $(( $(date +%s) - start )) s (results: $OUT/results, table: $OUT/table.md)"
