"""The paper params' GPU settings, checked without a GPU: vLLM's engine sized for what it runs (the tool loop's
trajectories in flight, 16k contexts), the fused AdamW and the Hub-kernels option reach what they configure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dualdistill.config import SFTConfig, load_config

REPO = Path(__file__).resolve().parents[1]
PAPER = ["paper-7b-qlora.yaml", "paper-7b-full.yaml"]


@pytest.mark.parametrize("name", PAPER)
def test_the_engine_is_sized_for_the_loop_and_16k_contexts(name: str) -> None:
    cfg = load_config(REPO / "params" / name)
    engine = cfg.student.extra["engine"]
    in_flight = max(cfg.self_distill.max_in_flight, cfg.eval.max_in_flight)
    assert engine["max_num_seqs"] >= in_flight, f"{name}: max_num_seqs below the tool loop's {in_flight} in flight"
    assert engine["max_num_batched_tokens"] >= max(cfg.eval.budgets.values())  # a 16k prefill in one step
    assert 0.5 < engine["gpu_memory_utilization"] < 1


@pytest.mark.parametrize("name", PAPER)
def test_fused_adamw_in_the_paper_params(name: str, tmp_path: Path) -> None:
    from dualdistill.training.sft import training_args

    cfg = load_config(REPO / "params" / name)
    for sft in (cfg.sft, cfg.self_distill.sft):
        assert sft.optim == "adamw_torch_fused"
        args = training_args(sft.model_copy(update={"bf16": False}), tmp_path, device="cpu", bf16=False, progress=False)
        assert str(args.optim.value if hasattr(args.optim, "value") else args.optim) == "adamw_torch_fused"


def test_the_official_optimizer_is_fused_when_asked() -> None:
    import torch

    from dualdistill.training.sft import official_optimizer

    model = torch.nn.Linear(4, 4)
    sft = SFTConfig(recipe="official", optim="adamw_torch_fused")
    opt = official_optimizer(model, sft)
    assert opt.defaults["fused"] is True and opt.defaults["weight_decay"] == 0.01
    model(torch.randn(2, 4)).sum().backward()
    opt.step()  # fused AdamW runs (here on CPU)
    assert official_optimizer(model, SFTConfig(recipe="official")).defaults["fused"] is None


def test_use_kernels_reaches_from_pretrained_and_stays_out_of_old_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    from dualdistill.training import sft as sft_mod

    assert "use_kernels" not in SFTConfig().model_dump()  # off: the hashes of existing runs do not move
    assert SFTConfig(use_kernels=True).model_dump()["use_kernels"] is True
    seen: dict[str, Any] = {}
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **kw: seen.update(kw) or "model")
    assert sft_mod.load_model("m", SFTConfig(method="lora", use_kernels=True), device="cuda", bf16=True) == "model"
    assert seen["use_kernels"] is True and seen["attn_implementation"] == "sdpa"
    with pytest.raises(ValueError, match="sft.use_kernels"):
        sft_mod.load_model("m", SFTConfig(use_kernels=True), device="cpu", bf16=False)
