"""QLoRA keeps the residual stream in the compute dtype: ``sft.load_model`` for ``method: qlora`` on a
narrow Qwen2 in NF4 (bitsandbytes' CPU library), with the GPU's compute dtype (bf16) forced on the CPU.
peft's ``prepare_model_for_kbit_training`` is run beside it as the counter-example: it makes them float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualdistill.config import SFTConfig
from dualdistill.training import sft as sft_mod
from dualdistill.training.kbit import activation_dtypes


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=320, tie_word_embeddings=False)
    out = tmp_path_factory.mktemp("narrow")
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
    return out


def _qlora(narrow: Path, monkeypatch: pytest.MonkeyPatch) -> torch.nn.Module:
    monkeypatch.setattr(sft_mod, "_compute_dtype", lambda sft, device, bf16: torch.bfloat16)  # a GPU's compute dtype
    return sft_mod.load_model(narrow, SFTConfig(method="qlora"), device="cpu", bf16=False)


def test_qlora_residual_stream_and_mlp_are_bf16(narrow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _qlora(narrow, monkeypatch)
    assert sft_mod.quantization_summary(model)["linear4bit_layers"] == 14
    dtypes = activation_dtypes(model, torch.randint(0, 320, (1, 12)))
    assert dtypes["embed_tokens"] == "bfloat16"
    assert dtypes["layers.0"] == dtypes["layers.1"] == "bfloat16"  # the residual stream after each layer
    assert dtypes["layers.1.mlp.act_fn"] == "bfloat16" and dtypes["layers.0.input_layernorm"] == "bfloat16"
    assert not any(p.requires_grad for p in model.parameters())  # the base is frozen (LoRA adds the trainables)


def test_qlora_with_lora_trains_in_bf16(narrow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import get_peft_model

    model = get_peft_model(_qlora(narrow, monkeypatch), sft_mod.lora_config(SFTConfig(method="qlora", lora_r=4)))
    ids = torch.randint(0, 320, (1, 12))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert activation_dtypes(model, ids)["layers.1"] == "bfloat16"


def test_peft_upcast_would_make_them_float32(narrow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the QLoRA path used before: every activation float32 (the check above can fail)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(str(narrow), dtype=torch.bfloat16, quantization_config=q,
                                                 device_map={"": "cpu"})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    dtypes = activation_dtypes(model, torch.randint(0, 320, (1, 12)))
    assert dtypes["layers.1"] == dtypes["layers.1.mlp.act_fn"] == dtypes["logits"] == "float32"
