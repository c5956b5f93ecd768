"""Activation memory of the paper params' SFT code paths, measured on CPU on ONE 7B-shaped layer, extrapolated.

    python bench/gpu_memory.py                                   # seq 256 512 1024 2048, all paths (~10 min, 2 cores)
    python bench/gpu_memory.py --seq 256 512 --paths qlora       # quicker

Each path loads a one-layer Qwen2 with DeepSeek-R1-Distill-Qwen-7B's layer shapes (hidden 3584, MLP 18944,
28 query / 4 KV heads; built here with random weights, nothing downloaded; the vocabulary is cut to 1,024
since the embeddings are counted from their shapes) through the package's own loader
(``dualdistill.training.sft.load_model`` with the paper params' sft section, bf16 as on a GPU), adds LoRA
where the path has it, and runs that decoder layer forward and backward at each sequence length:

- ``qlora``: NF4 base + LoRA (params/paper-7b-qlora.yaml), the base's other parameters kept in bf16
  (``training.kbit``);
- ``qlora-peft``: the same with peft's ``prepare_model_for_kbit_training`` (everything not 4-bit in fp32):
  what the QLoRA path did before;
- ``full``: bf16 weights, every parameter trained (params/paper-7b-full.yaml, recipe official).

What is measured, per layer and sequence length (all on CPU):

- the dtype of the layer's output (the residual stream) and of its MLP intermediate (forward hooks);
- ``saved``: bytes the layer keeps for backward (``torch.autograd.graph.saved_tensors_hooks``, each
  storage counted once, the model's own parameters left out): a layer's activations without gradient
  checkpointing;
- ``peak``: the largest sum of live tensor storages created during that layer's forward + backward (a
  ``TorchDispatchMode`` that adds every op's new output storages and subtracts them when freed): what
  recomputing one layer in backward costs under gradient checkpointing. Kernel-internal scratch that never
  becomes a tensor (e.g. inside SDPA) is not seen.

Extrapolation (printed as "measured on CPU, extrapolated"): a least-squares line in tokens through the
measured points (memory-efficient attention on a GPU — SDPA flash / mem-efficient, or flash-attn — is
O(tokens); the CPU's SDPA here is too, and the fit's largest relative residual is printed), evaluated at
16,384 tokens; 28 layers. With gradient checkpointing a run keeps 28 layer inputs (tokens × hidden × the
residual dtype) plus one layer's ``peak``; without, 28 × ``saved``. Weights, LoRA, gradients and the
optimizer's state are counted from the shapes (exact arithmetic); TRL's fused LM head from its source
(TRL 1.16: tiles of 4,096 tokens × 32,768 vocabulary, fp32 gradient of the hidden states); the CUDA
context and allocator slack are an estimate (1.5 GB), never measured here.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HIDDEN, MLP, HEADS, KV_HEADS, LAYERS, VOCAB = 3584, 18944, 28, 4, 28, 152064
TARGET = 16384
GB = 1e9
CUDA_CONTEXT_GB = 1.5  # estimate: CUDA context + allocator fragmentation (not measured: no GPU)
TRL_TOKEN_TILE, TRL_VOCAB_TILE = 4096, 32768  # trl/kernels/chunked_logprob.py (TOKEN_CHUNK_SIZE, chunk_size)


class LiveBytes:
    """Live bytes of the tensor storages created while active, and their peak (see the module docstring)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                tracker.track(out)
                return out

        self.mode = Mode()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def track(self, out: Any) -> None:
        import torch
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self.live:
                continue
            self.live[key] = n
            self.current += n
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __enter__(self) -> LiveBytes:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)


def build_layer_model(out: Path) -> Path:
    """A one-layer Qwen2 with the 7B's layer shapes (random bf16 weights), saved as a model directory."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=1, num_attention_heads=HEADS,
                      num_key_value_heads=KV_HEADS, vocab_size=1024, max_position_embeddings=32768,
                      tie_word_embeddings=False, rope_theta=10000.0)
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
    return out


def load_path(path: str, model_dir: Path) -> tuple[Any, Any]:
    """(model, sft section) for a path, loaded through the package's code with a GPU's bf16 compute dtype."""
    import torch
    from peft import get_peft_model

    from dualdistill.config import load_config
    from dualdistill.training import sft as sft_mod

    params = "paper-7b-full.yaml" if path == "full" else "paper-7b-qlora.yaml"
    sft = load_config(REPO / "params" / params).sft.model_copy(update={"bf16": False})
    sft_mod._compute_dtype = lambda *a: torch.bfloat16  # the GPU's compute dtype, forced on this CPU
    if path == "qlora-peft":
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16, quantization_config=q,
                                                     device_map={"": "cpu"})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = sft_mod.load_model(model_dir, sft, device="cpu", bf16=False)
    if path != "full":
        model = get_peft_model(model, sft_mod.lora_config(sft))
        for _name, p in model.named_parameters():  # TRL keeps the adapter in bf16 on a quantised base
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    else:
        model.requires_grad_(True)
    return model, sft


def measure_layer(model: Any, tokens: int) -> dict[str, Any]:
    """One decoder layer forward + backward at ``tokens`` tokens: dtypes, saved bytes, peak live bytes."""
    import torch

    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    layer = inner.layers[0]
    dtype = inner.embed_tokens.weight.dtype  # the residual stream starts as the embeddings' dtype
    torch.manual_seed(tokens)
    x = (torch.randn(1, tokens, HIDDEN) * 0.02).to(dtype).requires_grad_(True)
    pos = torch.arange(tokens)[None]
    cos_sin = inner.rotary_emb(x, pos)
    seen: dict[str, str] = {}
    hook = layer.mlp.act_fn.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp_intermediate", str(o.dtype)))
    saved: dict[int, tuple[int, str]] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are counted from the shapes

    def pack(t: Any) -> Any:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved.setdefault(st.data_ptr(), (st.nbytes(), str(t.dtype).removeprefix("torch.")))
        return t

    t0 = time.time()
    with LiveBytes() as live:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = layer(x, attention_mask=None, position_ids=pos, position_embeddings=cos_sin)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.ones_like(out) * 1e-3)
    hook.remove()
    by_dtype: dict[str, int] = {}
    for n, dt in saved.values():
        by_dtype[dt] = by_dtype.get(dt, 0) + n
    result = {"tokens": tokens, "residual_dtype": str(out.dtype).removeprefix("torch."),
              "mlp_intermediate_dtype": seen.get("mlp_intermediate", "?").removeprefix("torch."),
              "saved_bytes": sum(by_dtype.values()), "saved_by_dtype": by_dtype, "peak_bytes": live.peak,
              "seconds": round(time.time() - t0, 1)}
    del out, x
    gc.collect()
    return result


def fit(points: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Least-squares ``a·tokens + b``; returns (a, b, largest relative residual)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points) or 1.0
    a = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    b = my - a * mx
    worst = max(abs(a * t + b - y) / y for t, y in points) if n > 1 else 0.0
    return a, b, worst


def static_gb(path: str, sft: Any) -> dict[str, float]:
    """Weights, LoRA, gradients and optimizer state of the 7B from its shapes (exact arithmetic)."""
    linear = LAYERS * (HIDDEN * (HIDDEN + 2 * 512) + 512 * 2 + HIDDEN + HIDDEN * HIDDEN + 3 * HIDDEN * MLP)
    embed = 2 * VOCAB * HIDDEN  # embed_tokens + lm_head (untied)
    small = (2 * LAYERS + 1) * HIDDEN  # norms
    total = linear + embed + small
    if path == "full":
        states = {"bf16 weights": 2 * total, "bf16 gradients": 2 * total, "AdamW m, v (bf16, official)": 4 * total}
        return {k: v / GB for k, v in states.items()}
    lora_per_layer = sft.lora_r * ((HIDDEN + HIDDEN) + (HIDDEN + 512) * 2 + (HIDDEN + HIDDEN) + 2 * (HIDDEN + MLP)
                                   + (MLP + HIDDEN))
    lora = LAYERS * lora_per_layer
    nf4 = linear * 0.5 + linear / 64 * (1 + 4 / 256) + linear / 64 / 256 * 4  # 4-bit + double-quantised absmax
    other = (embed + small) * (4 if path == "qlora-peft" else 2)
    optim = 2 * lora * (1 if "8bit" in sft.optim else 2)  # AdamW m, v in the adapter's bf16; 8-bit: 1 byte each
    return {"NF4 linear layers": nf4 / GB, "embeddings, lm_head, norms": other / GB,
            f"LoRA r{sft.lora_r} ({lora / 1e6:.0f} M) weights + grads (bf16)": 4 * lora / GB,
            f"optimizer state ({sft.optim})": optim / GB}


def head_gb(path: str, residual_bytes: int) -> float:
    """TRL's fused LM head at 16k tokens (from its source): one logits tile, the fp32 gradient of the hidden
    states, and for full SFT the fp32 gradient of lm_head."""
    tile = TRL_TOKEN_TILE * TRL_VOCAB_TILE * residual_bytes
    grad_hidden = TARGET * HIDDEN * 4
    grad_weight = VOCAB * HIDDEN * 4 if path == "full" else 0
    return (tile + grad_hidden + grad_weight) / GB


def run(paths: list[str], seqs: list[int], workdir: Path) -> dict[str, Any]:
    model_dir = build_layer_model(workdir / "layer7b")
    report: dict[str, Any] = {}
    for path in paths:
        model, sft = load_path(path, model_dir)
        rows = [measure_layer(model, s) for s in seqs]
        for r in rows:
            print(json.dumps({"path": path, **r}), flush=True)
        del model
        gc.collect()
        a_saved, b_saved, w_saved = fit([(r["tokens"], r["saved_bytes"]) for r in rows])
        a_peak, b_peak, w_peak = fit([(r["tokens"], r["peak_bytes"]) for r in rows])
        residual = {"bfloat16": 2, "float32": 4}[rows[-1]["residual_dtype"]]
        saved16k = (a_saved * TARGET + b_saved) / GB
        peak16k = (a_peak * TARGET + b_peak) / GB
        ckpt_inputs = LAYERS * TARGET * HIDDEN * residual / GB
        static = static_gb(path, sft)
        head = head_gb(path, residual)
        fixed = sum(static.values()) + head + CUDA_CONTEXT_GB
        report[path] = {"rows": rows, "residual_dtype": rows[-1]["residual_dtype"],
                        "mlp_intermediate_dtype": rows[-1]["mlp_intermediate_dtype"],
                        "saved_per_layer_16k_gb": saved16k, "peak_per_layer_16k_gb": peak16k,
                        "fit_worst_rel_residual": max(w_saved, w_peak), "static_gb": static, "head_gb": head,
                        "checkpointed_inputs_gb": ckpt_inputs,
                        "total_checkpointing_gb": fixed + ckpt_inputs + peak16k,
                        "total_no_checkpointing_gb": fixed + LAYERS * saved16k + peak16k - saved16k}
    return report


def print_tables(report: dict[str, Any]) -> None:
    print("\n## per layer, measured on CPU (one 7B-shaped decoder layer, forward + backward)\n")
    print("| path | tokens | residual | MLP intermediate | saved for backward | peak live (fwd+bwd) | s |")
    print("|---|---:|---|---|---:|---:|---:|")
    for path, rep in report.items():
        for r in rep["rows"]:
            print(f"| {path} | {r['tokens']:,} | {r['residual_dtype']} | {r['mlp_intermediate_dtype']} | "
                  f"{r['saved_bytes'] / 2**20:,.0f} MiB | {r['peak_bytes'] / 2**20:,.0f} MiB | {r['seconds']} |")
    print(f"\n## 28 layers at {TARGET:,} tokens, batch 1: measured on CPU, extrapolated (GB = 1e9 bytes)\n")
    print("| path | per layer saved @16k | per layer peak @16k | fit residual | 28 checkpointed inputs | "
          "weights + LoRA + grads + optimizer | fused LM head (TRL source) | CUDA context (estimate) | "
          "**total, checkpointing** | total, no checkpointing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path, r in report.items():
        print(f"| {path} | {r['saved_per_layer_16k_gb']:.2f} | {r['peak_per_layer_16k_gb']:.2f} | "
              f"{r['fit_worst_rel_residual']:.1%} | {r['checkpointed_inputs_gb']:.2f} | {sum(r['static_gb'].values()):.2f} | "
              f"{r['head_gb']:.2f} | {CUDA_CONTEXT_GB} | **{r['total_checkpointing_gb']:.1f}** | "
              f"{r['total_no_checkpointing_gb']:.1f} |")
    for path, r in report.items():
        print(f"\n{path} static parts: " + ", ".join(f"{k} {v:.2f}" for k, v in r["static_gb"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--paths", nargs="+", default=["qlora", "qlora-peft", "full"],
                    choices=["qlora", "qlora-peft", "full"])
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        report = run(a.paths, a.seq, Path(tmp))
    print_tables(report)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
