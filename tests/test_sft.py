"""SFT (dualdistill.training.sft) and stage 03 (dualdistill.stages.teacher_distillation) on a tiny random Qwen2, on CPU.

full / LoRA / QLoRA train with falling loss and merge into a plain model that reloads and generates;
masked label positions get exactly zero gradient; a crashed run resumes from its last checkpoint
with the step count continuing; stage 03 trains S0 → S1 and a baseline, then skips on a rerun.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import write_jsonl
from dualdistill.config import SFTConfig, config_from_dict
from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment


# --- a tiny model and a few training examples -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded student's tiny Qwen2 (``dualdistill.training.tiny_model.build_tiny``: hidden 32, 2 layers, its
    own byte-level BPE). Its ``lm_head`` is scaled up 10x: LoRA leaves the head frozen, and at the
    default init scale (0.02) the logits cannot move far enough in a few steps to show learning."""
    from safetensors.torch import load_file, save_file

    from dualdistill.config import TinyModelConfig
    from dualdistill.training.tiny_model import build_tiny

    corpus = [ex["prompt"] + formatting.render([Segment.from_dict(s) for s in ex["segments"]])
              for ex in examples()] * 3
    out = build_tiny(TinyModelConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=64, max_position_embeddings=1024,
                                     vocab_size=400, seed=0), tmp_path_factory.mktemp("tiny") / "base", corpus)
    weights = load_file(out / "model.safetensors")
    weights["lm_head.weight"] = weights["lm_head.weight"] * 10
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def _example(i: int, segments: list[Segment], *, mask_first: bool = False, problem: str = "What is 6*7?") -> dict:
    return {"key": f"ex{i}", "problem_id": f"p{i}", "prompt": formatting.build_prompt(problem, code=True),
            "segments": [s.to_dict() for s in segments], "mask_until_first_transition": mask_first,
            "source": "t1"}


def examples() -> list[dict]:
    fix = [  # a wrong text attempt, the switch, a code solution (case 01: no loss before the transition)
        Segment("think", "6*7 is 48."),
        Segment("transition", formatting.TEXT_TO_CODE),
        Segment("code", "print(6*7)", {"status": "ok"}),
        Segment("executor", "42", {"status": "ok"}),
        Segment("answer", formatting.answer_text("42")),
    ]
    failed = [  # failed code (no loss), then working code
        Segment("think", "Compute it."),
        Segment("code", "print(6*)", {"status": "error"}),
        Segment("executor", "SyntaxError: invalid syntax", {"status": "error"}),
        Segment("code", "print(6*7)", {"status": "ok"}),
        Segment("executor", "42", {"status": "ok"}),
        Segment("answer", formatting.answer_text("42")),
    ]
    text = [Segment("think", "Six sevens are 42."), Segment("answer", formatting.answer_text("42"))]
    return [_example(0, fix, mask_first=True), _example(1, failed), _example(2, text)]


def train_set(repeat: int = 4) -> list[dict]:
    return [dict(e, key=f"{e['key']}-{r}") for r in range(repeat) for e in examples()]


def fast_sft(**kw) -> SFTConfig:
    base = dict(method="full", learning_rate=3e-3, lr_scheduler_type="constant", max_steps=12,
                per_device_train_batch_size=2, max_length=512, gradient_checkpointing=False,
                logging_steps=1, save_steps=100, lora_r=8, lora_alpha=16, lora_dropout=0.0, seed=0)
    return SFTConfig(**{**base, **kw})


def _generates(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok(formatting.build_prompt("What is 6*7?", code=True), return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or out[0, -1].item() == tok.eos_token_id


# --- data -------------------------------------------------------------------------------------------
def test_tokenize_examples_drops_or_truncates_over_length(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    from dualdistill.training.sft import tokenize_examples

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    exs = examples()
    rows, stats = tokenize_examples(exs, tok, fast_sft(max_length=4096), progress=False)
    lengths = [len(r["input_ids"]) for r in rows]
    assert stats["kept"] == 3 and stats["dropped"] == 0
    assert all(len(r["labels"]) == len(r["input_ids"]) for r in rows)
    assert all(r["input_ids"][-1] == tok.eos_token_id and r["labels"][-1] == tok.eos_token_id for r in rows)
    cut = sorted(lengths)[1]  # the shortest example fits, the two longer ones do not
    rows, stats = tokenize_examples(exs, tok, fast_sft(max_length=cut, over_length="drop"), progress=False)
    assert (stats["kept"], stats["dropped"]) == (sum(n <= cut for n in lengths), sum(n > cut for n in lengths))
    rows, stats = tokenize_examples(exs, tok, fast_sft(max_length=cut, over_length="truncate"), progress=False)
    assert stats["truncated"] == sum(n > cut for n in lengths) and stats["dropped"] == 0
    assert max(len(r["input_ids"]) for r in rows) == cut


def test_training_example_without_prompt_is_named(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    from dualdistill.training.sft import tokenize_examples

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    with pytest.raises(ValueError, match="bad-one"):
        tokenize_examples([{"key": "bad-one", "segments": []}], tok, fast_sft(), progress=False)


# --- the loss masks reach the gradient ------------------------------------------------------------------
def test_masked_positions_receive_no_gradient(tiny_dir: Path, tmp_path: Path) -> None:
    """Through the real trainer (collator, TRL's fused loss): d(loss)/d(final hidden state) is zero at
    every position whose next-token label is -100 — that hidden state only feeds that position's
    logits — and non-zero where the next token is trained; the loss equals the mean cross-entropy
    over trained tokens computed from full logits."""
    from transformers import AutoTokenizer

    from dualdistill.training.sft import build_trainer, load_model, tokenize_examples, training_args

    sft = fast_sft(per_device_train_batch_size=2)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows, _ = tokenize_examples(examples()[:2], tok, sft, progress=False)  # two lengths: padding too
    args = training_args(sft, tmp_path, device="cpu", bf16=False, progress=False)
    model = load_model(tiny_dir, sft, device="cpu", bf16=False, args=args)
    trainer = build_trainer(model, tok, rows, args, sft)
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"]
    for ids, lab, att in zip(batch["input_ids"].tolist(), labels.tolist(), batch["attention_mask"].tolist(),
                             strict=True):  # the collator keeps our labels as given, pads with -100
        n = sum(att)
        want = next(r for r in rows if r["input_ids"] == ids[:n])
        assert lab[:n] == want["labels"] and set(lab[n:]) <= {-100}

    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["h"] = output

    handle = trainer.model.model.norm.register_forward_hook(keep)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    handle.remove()
    grad = captured["h"].grad  # (batch, seq, hidden)
    nxt = labels[:, 1:]
    g = grad[:, :-1].abs().sum(-1)
    masked, trained = nxt == -100, nxt != -100
    assert masked.sum() > 0 and trained.sum() > 0
    assert torch.all(g[masked] == 0), "a position whose next label is masked received gradient"
    assert torch.all(g[trained] > 0)
    assert torch.all(grad[:, -1] == 0)  # the last position predicts nothing

    # the masked positions include executor output and the wrong first attempt, not only the prompt
    prompt_len = len(tok(examples()[0]["prompt"], add_special_tokens=False)["input_ids"])
    assert masked[:, prompt_len:].sum() > 0

    with torch.no_grad():  # the same loss from full logits: mean CE over trained next tokens
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), nxt.reshape(-1),
                                               ignore_index=-100)
    assert abs(ce.item() - loss.item()) < 1e-4


# --- full / lora / qlora ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method,lr", [("full", 3e-3), ("lora", 1e-2), ("qlora", 1e-2)])
def test_methods_train_merge_reload_generate(tiny_dir: Path, tmp_path: Path, method: str, lr: float) -> None:
    from safetensors.torch import load_file

    from dualdistill.training.sft import train_sft

    sft = fast_sft(method=method, learning_rate=lr, max_steps=12)
    model_dir = tmp_path / "model"
    s = train_sft(train_set(), tiny_dir, tmp_path / "work", sft, model_dir=model_dir, device="cpu", progress=False)
    assert s["steps"] == 12 and s["method"] == method and s["examples"] == 12 and s["kept"] == 12
    log = pd.read_csv(tmp_path / "work" / "loss.csv")
    assert list(log["step"]) == list(range(1, 13))
    assert log["loss"].iloc[-3:].mean() < log["loss"].iloc[:3].mean() - 0.5, log["loss"].tolist()
    assert s["final_loss"] == pytest.approx(log["loss"].iloc[-1])
    assert s["tokens_trained"] > 0 and s["tokens_per_s"] > 0

    # a plain model: safetensors, no adapter files, weights changed from the base
    assert (model_dir / "model.safetensors").is_file() and not (model_dir / "adapter_config.json").exists()
    assert (model_dir / "tokenizer.json").is_file() and (model_dir / "sft_summary.json").is_file()
    base_w, new_w = load_file(tiny_dir / "model.safetensors"), load_file(model_dir / "model.safetensors")
    assert set(base_w) == set(new_w)
    changed = [k for k in base_w if not torch.equal(base_w[k], new_w[k])]
    assert any("q_proj" in k for k in changed)
    if method != "full":
        assert (tmp_path / "work" / "adapter" / "adapter_config.json").is_file()
        assert not any("embed_tokens" in k or "norm" in k for k in changed)  # only LoRA targets move
    _generates(model_dir)


def test_padding_free_and_checkpointing_match_padded_losses_and_packing_trains(tiny_dir: Path, tmp_path: Path) -> None:
    """Padding-free batches (position_ids, no padding) and gradient checkpointing compute the same
    losses as plain padded batches; bfd packing trains."""
    from dualdistill.training.sft import train_sft

    def losses(name: str, **kw) -> list[float]:
        train_sft(train_set(), tiny_dir, tmp_path / name, fast_sft(max_steps=4, **kw), device="cpu", progress=False)
        return pd.read_csv(tmp_path / name / "loss.csv")["loss"].tolist()

    padded = losses("padded")
    assert losses("padding_free", padding_free=True) == pytest.approx(padded, abs=2e-3)
    assert losses("checkpointing", gradient_checkpointing=True) == pytest.approx(padded, abs=2e-3)
    packed = losses("packed", packing=True)
    assert len(packed) == 4 and packed[-1] < packed[0] - 0.5


def test_qlora_loads_a_4bit_nf4_base(tiny_dir: Path, tmp_path: Path) -> None:
    from dualdistill.training.sft import load_model, training_args

    sft = fast_sft(method="qlora")
    args = training_args(sft, tmp_path, device="cpu", bf16=False, progress=False)
    model = load_model(tiny_dir, sft, device="cpu", bf16=False, args=args)
    proj = model.model.layers[0].self_attn.q_proj
    assert type(proj).__name__ == "Linear4bit" and proj.weight.quant_state.quant_type == "nf4"
    assert getattr(model, "is_loaded_in_4bit", False)


def test_bf16_on_cpu_is_a_clear_error() -> None:
    from dualdistill.training.sft import use_bf16

    assert use_bf16(fast_sft(bf16=None), "cpu") is False
    with pytest.raises(ValueError, match="bf16"):
        use_bf16(fast_sft(bf16=True), "cpu")


# --- recipe official ----------------------------------------------------------------------------------------
def test_recipe_official_fixes_the_official_numerics() -> None:
    from dualdistill.config import OFFICIAL_SFT

    sft = SFTConfig(recipe="official", learning_rate=1e-5, max_length=8192)
    assert {k: getattr(sft, k) for k in OFFICIAL_SFT} == OFFICIAL_SFT
    assert (sft.learning_rate, sft.max_length, sft.weight_decay, sft.lr_scheduler_type) == (1e-5, 8192, 0.01, "constant")
    with pytest.raises(ValueError, match="recipe official fixes per_device_train_batch_size = 1"):
        SFTConfig(recipe="official", per_device_train_batch_size=8)
    with pytest.raises(ValueError, match="recipe official fixes method"):
        SFTConfig(recipe="official", method="qlora")
    assert SFTConfig().weight_decay == 0.0 and SFTConfig().recipe == "project"  # the project's default is unchanged


def test_recipe_official_refuses_several_processes() -> None:
    from dualdistill.training.sft import check_recipe

    check_recipe(SFTConfig(recipe="official"), 1)
    check_recipe(SFTConfig(), 8)  # the project's recipe: global batch = processes x per device x accumulation
    with pytest.raises(ValueError, match="global batch of 1 .* under 8 processes it would be 8"):
        check_recipe(SFTConfig(recipe="official"), 8)


def test_recipe_official_trains_bf16_weights_with_the_official_optimizer(tiny_dir: Path, tmp_path: Path) -> None:
    """bf16 weights on CPU (no fp32 master, no autocast), torch AdamW as the official sft/train.py builds it
    (``AdamW(model.parameters(), lr=lr)``: torch's default weight decay 0.01, on every parameter),
    constant lr, clip 1.0, one example per step."""
    from safetensors import safe_open

    from dualdistill.training.sft import load_model, official_optimizer, train_sft, training_args

    sft = SFTConfig(recipe="official", learning_rate=3e-3, max_steps=12, max_length=512, logging_steps=1,
                    save_steps=100, gradient_checkpointing=False)
    args = training_args(sft, tmp_path / "a", device="cpu", bf16=False, progress=False)
    assert (args.bf16, args.fp16, args.weight_decay, args.max_grad_norm) == (False, False, 0.01, 1.0)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 1)
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "constant" and args.warmup_steps == 0
    model = load_model(tiny_dir, sft, device="cpu", bf16=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ours = official_optimizer(model, sft)
    theirs = torch.optim.AdamW(model.parameters(), lr=sft.learning_rate)  # the official call
    assert len(ours.param_groups) == len(theirs.param_groups) == 1
    assert ours.param_groups[0]["params"] == theirs.param_groups[0]["params"]
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    assert {k: ours.defaults[k] for k in keys} == {k: theirs.defaults[k] for k in keys}
    assert theirs.defaults["weight_decay"] == 0.01

    s = train_sft(train_set(), tiny_dir, tmp_path / "work", sft, model_dir=tmp_path / "model", device="cpu",
                  progress=False)
    assert (s["recipe"], s["weights_dtype"], s["global_batch"], s["steps"]) == ("official", "bfloat16", 1, 12)
    log = pd.read_csv(tmp_path / "work" / "loss.csv")
    assert log["loss"].iloc[-3:].mean() < log["loss"].iloc[:3].mean() - 0.5, log["loss"].tolist()
    assert set(log["learning_rate"]) == {3e-3}  # constant, no warm-up
    with safe_open(str(tmp_path / "model" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    _generates(tmp_path / "model")


# --- resume and skip ---------------------------------------------------------------------------------------
class Crash(RuntimeError):
    pass


def test_crash_resume_continues_step_count_and_rerun_skips(tiny_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import TrainerCallback

    import dualdistill.training.sft as sftmod

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise Crash("simulated crash at step 5")

    real_build = sftmod.build_trainer

    def crashing_build(*a, **kw):
        trainer = real_build(*a, **kw)
        trainer.add_callback(CrashAt())
        return trainer

    work, model_dir = tmp_path / "work", tmp_path / "model"
    data = train_set()
    monkeypatch.setattr(sftmod, "build_trainer", crashing_build)
    with pytest.raises(Crash):
        sftmod.train_sft(data, tiny_dir, work, fast_sft(max_steps=8, save_steps=2), model_dir=model_dir,
                         device="cpu", progress=False)
    monkeypatch.setattr(sftmod, "build_trainer", real_build)
    assert sftmod.last_checkpoint(work / "checkpoints").name == "checkpoint-4"
    assert not (model_dir / sftmod.SFT_STAMP).exists()  # not finished

    # rerun with more steps: continues from checkpoint-4
    s = sftmod.train_sft(data, tiny_dir, work, fast_sft(max_steps=10, save_steps=2), model_dir=model_dir,
                         device="cpu", progress=False)
    assert s["resumed_from_step"] == 4 and s["steps"] == 10
    assert list(pd.read_csv(work / "loss.csv")["step"]) == list(range(1, 11))  # log history restored
    state = json.loads((work / "checkpoints" / "checkpoint-10" / "trainer_state.json").read_text())
    assert state["global_step"] == 10

    # same config and data: skipped; different data: old checkpoints are not reused
    again = sftmod.train_sft(data, tiny_dir, work, fast_sft(max_steps=10, save_steps=2), model_dir=model_dir,
                             device="cpu", progress=False)
    assert again["skipped"] is True and again["steps"] == 10
    fresh = sftmod.train_sft(data[:6], tiny_dir, work, fast_sft(max_steps=3, save_steps=2), model_dir=model_dir,
                             device="cpu", progress=False)
    assert fresh["resumed_from_step"] == 0 and fresh["steps"] == 3


def test_cli_trains_from_a_params_file(tiny_dir: Path, tmp_path: Path) -> None:
    import yaml

    from dualdistill.training.sft import main

    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"run_name": "cli", "device": "cpu",
                                      "sft": fast_sft(max_steps=2).model_dump(mode="json")}))
    write_jsonl(tmp_path / "ex.jsonl", train_set(1))
    assert main([str(params), "--set", "sft.max_steps=3", "--examples", str(tmp_path / "ex.jsonl"), "--base",
                 str(tiny_dir), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["steps"] == 3 and (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "sft_config.json").read_text())["sft"]["max_steps"] == 3


# --- stage 03 ------------------------------------------------------------------------------------------------
def _stage_params(tmp_path: Path) -> dict:
    sft = fast_sft(max_steps=4, save_steps=100).model_dump(mode="json")
    return {"run_name": "s03", "output_dir": str(tmp_path / "outputs"), "device": "cpu",
            "student": {"model": "tiny", "stage0_sft": {**sft, "max_steps": 3}},
            "sft": sft, "baselines": {"text_only": "text"}}


def _stage_cfg(tmp_path: Path):
    return config_from_dict(_stage_params(tmp_path))


def _rollout_record(i: int, ex: dict, *, teacher: str = "text", correct: bool = True) -> dict:
    return {"key": f"r{i}", "problem": {"id": f"s0/{i}", "problem": "What is 6*7?", "answer": "42",
                                        "source": "world", "subset": "computation"},
            "role": "first", "teacher": teacher, "sample": 0, "status": "ok", "correct": correct,
            "trajectory": {"problem_id": f"s0/{i}", "role": teacher, "prompt": "", "segments": ex["segments"]}}


def _stage0_records() -> list[dict]:
    text_ex = examples()[2]
    records = [_rollout_record(i, text_ex) for i in range(4)]
    return records + [_rollout_record(9, examples()[1], teacher="agent"), _rollout_record(8, text_ex, correct=False),
                      dict(_rollout_record(7, text_ex), config_hash="an-older-config")]


def _write_stage02_outputs(cfg) -> None:
    paths = RunPaths.of(cfg)
    write_jsonl(paths.t1, [dict(e, case="01" if e["mask_until_first_transition"] else "10") for e in train_set(2)])
    write_jsonl(paths.baseline_data("text_only"), [examples()[2]] * 4)


def test_stage03_trains_s0_s1_baselines_and_skips_on_rerun(tiny_dir: Path, tmp_path: Path) -> None:
    from dualdistill.artifacts.ledger import read_metrics
    from dualdistill.artifacts.paths import model_path
    from dualdistill.stages.teacher_distillation import loss_curves, run, summary_table

    cfg = _stage_cfg(tmp_path)
    paths = RunPaths.of(cfg)
    with pytest.raises(FileNotFoundError, match="stage 01 .*has not run .*tiny student"):
        run(cfg, progress=False)
    shutil.copytree(tiny_dir, paths.tiny_base)
    write_jsonl(paths.stage0_rollouts, _stage0_records())
    with pytest.raises(FileNotFoundError, match="stage 02 .*has not run .*T1"):
        run(cfg, progress=False)
    assert not paths.model("S0").exists()  # every input is checked before the first training
    _write_stage02_outputs(cfg)

    summary = run(cfg, progress=False)
    assert read_metrics(cfg, "03") == json.loads(json.dumps(summary, default=str))
    assert set(summary["models"]) == {"S0", "S1", "text_only"}
    assert summary["models"]["S0"]["examples"] == 4  # correct text-teacher traces only
    assert summary["models"]["S0"]["steps"] == 3 and summary["models"]["S1"]["steps"] == 4
    assert model_path(cfg, "S0") == str(paths.model("S0")) == summary["models"]["S1"]["base_model"]
    for name in ("S0", "S1", "text_only"):
        assert (paths.model(name) / "model.safetensors").is_file()
        assert (paths.checkpoints(name) / "loss.csv").is_file()
    table = summary_table(summary)
    assert list(table.index) == ["S0", "S1", "text_only"] and table["final_loss"].notna().all()
    curves = loss_curves(cfg)
    assert set(curves["model"]) == {"S0", "S1", "text_only"} and len(curves) == 3 + 4 + 4
    _generates(paths.model("S1"))

    again = run(cfg, progress=False)
    assert all(m.get("skipped") for m in again["models"].values())

    hub = config_from_dict({"run_name": "hub", "output_dir": str(tmp_path / "o"), "student": {"model": "org/m"}})
    assert model_path(hub, "S0") == "org/m"
    assert model_path(hub, "S1") == str(RunPaths.of(hub).model("S1"))


# --- multi-process and notebook (slow) -------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_under_two_processes_trains_once_and_writes_once(tiny_dir: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2`` (what ``accelerate launch`` does on GPUs), DDP over gloo on CPU:
    the data is sharded (2 epochs in 6 steps of 2x2 examples) and rank 0 alone merges and writes."""
    import subprocess
    import sys

    import yaml

    params = tmp_path / "p.yaml"
    sft = fast_sft(method="lora", learning_rate=1e-2, max_steps=6, save_steps=3)
    params.write_text(yaml.safe_dump({"run_name": "ddp", "device": "cpu", "sft": sft.model_dump(mode="json")}))
    write_jsonl(tmp_path / "ex.jsonl", train_set())
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "dualdistill.training.sft", str(params),
         "--examples", str(tmp_path / "ex.jsonl"), "--base", str(tiny_dir), "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["epochs"] == pytest.approx(2.0)
    assert json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    _generates(out / "model")


@pytest.mark.slow
def test_notebook_03_runs(tiny_dir: Path, tmp_path: Path) -> None:
    import yaml

    from dualdistill.artifacts.ledger import read_metrics
    from dualdistill.pipeline.papermill_runner import REPO, execute_notebook

    cfg = _stage_cfg(tmp_path)
    shutil.copytree(tiny_dir, RunPaths.of(cfg).tiny_base)
    write_jsonl(RunPaths.of(cfg).stage0_rollouts, _stage0_records())
    _write_stage02_outputs(cfg)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_stage_params(tmp_path)))
    out_nb = tmp_path / "03.ipynb"
    execute_notebook(REPO / "notebooks" / "03_teacher_distillation_sft.ipynb", out_nb,
                     {"params": str(params), "overrides": {"sft.max_steps": 5}}, progress=False)
    metrics = read_metrics(cfg, "03")
    assert {name: m["steps"] for name, m in metrics["models"].items()} == {"S0": 3, "S1": 5, "text_only": 5}
    assert all(m["final_loss"] > 0 for m in metrics["models"].values())
    assert metrics["model_dirs"]["S1"] == str(RunPaths.of(cfg).model("S1"))
