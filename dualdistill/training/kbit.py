"""A 4-bit base made ready for QLoRA with its activations in the compute dtype (bf16 on a GPU).

    model = prepare_4bit_for_lora(AutoModelForCausalLM.from_pretrained(base, quantization_config=nf4_bf16))

``peft.prepare_model_for_kbit_training`` casts every parameter that is not 4-bit to float32: the
embeddings, ``lm_head`` and the RMSNorm weights. bitsandbytes' ``Linear4bit`` returns its input's
dtype, and Qwen2's RMSNorm returns ``weight * x``, so after that cast the residual stream, every
attention and MLP input and every MLP intermediate are float32: twice the activation memory of bf16
(bench/gpu_memory.py measures it: docs/GPU.md). For LoRA those parameters are frozen, so float32 buys
no precision in any update; this keeps them in the compute dtype instead. RMSNorm still computes its
variance in float32 inside (transformers' Qwen2RMSNorm), and TRL's fused LM head computes the loss
from its logits tiles. What it does do, as peft does: freeze every base parameter. (peft also hooks the
embeddings' output to require grad, needed only for reentrant checkpointing; ours is non-reentrant, and
TRL adds that hook itself where it needs it.)
"""

from __future__ import annotations

from typing import Any


def prepare_4bit_for_lora(model: Any, compute_dtype: Any = None) -> Any:
    """Freeze ``model`` and keep its non-4-bit parameters in ``compute_dtype`` (default: the dtype of its
    embeddings)."""
    dtype = compute_dtype or model.get_input_embeddings().weight.dtype
    for param in model.parameters():
        param.requires_grad = False
        if param.__class__.__name__ != "Params4bit" and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


def activation_dtypes(model: Any, input_ids: Any) -> dict[str, str]:
    """One forward pass; the dtype of the embeddings' output, of each decoder layer's output (the residual
    stream), of the first MLP's intermediate and of the logits, by module name."""
    import torch

    seen: dict[str, str] = {}
    hooks = []
    for name, module in model.named_modules():
        short = name.split("model.")[-1] if "model." in name else name
        if short.endswith("embed_tokens") or short.endswith("mlp.act_fn") or short.endswith("input_layernorm") \
                or (short.startswith("layers.") and short.count(".") == 1):
            def hook(mod: Any, args: Any, out: Any, short: str = short) -> None:
                seen[short] = str((out[0] if isinstance(out, tuple) else out).dtype).removeprefix("torch.")
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits
    finally:
        for h in hooks:
            h.remove()
    seen["logits"] = str(logits.dtype).removeprefix("torch.")
    return seen
