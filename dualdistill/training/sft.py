"""Supervised fine-tuning with TRL: full, LoRA or QLoRA on masked training examples (steps 4 and 7).

    summary = train_sft(examples, "outputs/run/models/S0", "outputs/run/checkpoints/S1", cfg.sft,
                        model_dir="outputs/run/models/S1")

    python -m dualdistill.training.sft params/smoke.yaml --examples outputs/smoke/t1/examples.jsonl \\
        --base outputs/smoke/models/S0 --out outputs/smoke/checkpoints/S1 [sft.max_steps=20 ...]
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m dualdistill.training.sft ...

Examples are "Training example" records (docs/ARCHITECTURE.md). Each is tokenised once with
:func:`dualdistill.training.masking.tokenize_with_labels` (labels are -100 wherever the student should not
learn: prompt, executor output, failed code, optionally the wrong first attempt); examples longer
than ``max_length`` are dropped (official code) or truncated. TRL's ``SFTTrainer`` takes the
pre-tokenised ``input_ids`` + ``labels`` as given.

Layout of ``output_dir``: ``checkpoints/checkpoint-N`` (resumed from the last one when the data and
the training-relevant settings are unchanged), ``adapter/`` (lora/qlora), ``sft_config.json``,
``loss.csv``, ``summary.json``; the plain merged model (safetensors + tokenizer, loadable by
transformers and vLLM) goes to ``model_dir`` (default ``output_dir/model``) with
``sft_summary.json``, whose hash makes a rerun with the same config and data a no-op.
Under ``accelerate launch`` every rank trains; only rank 0 merges and writes files.

Recipes (``sft.recipe``), side by side:

==============================  =======================================  ========================================
                                ``project`` (default)                    ``official`` (the official ``sft/train.py``)
==============================  =======================================  ========================================
weights                         float32 masters (full); bf16 autocast    bf16 weights, no fp32 master, no autocast
                                on a GPU (``sft.bf16``)                  (optimizer states in bf16 too)
optimizer                       transformers' ``optim`` (AdamW: decay    torch AdamW, weight decay 0.01 on every
                                ``weight_decay``, not on biases/norms)   parameter, betas (0.9, 0.999), eps 1e-8
learning rate                   ``lr_scheduler_type``, ``warmup_ratio``  constant, no warm-up
gradient clipping               ``max_grad_norm`` (1.0)                  1.0
batch                           per device × accumulation × processes    1 (one process; several are refused)
==============================  =======================================  ========================================

The official run is one process; on several GPUs it spreads the model over them
(``device_map="auto"``), which ``recipe: official`` does too when one process sees several GPUs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from dualdistill.common import progress as progress_lines
from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import read_jsonl, write_json
from dualdistill.config import ConfigError, SFTConfig, load_config, parse_override
from dualdistill.training.masking import tokenize_with_labels
from dualdistill.training.stamp import SFT_STAMP, model_fingerprint, read_stamp

log = logging.getLogger(__name__)


class _QuietOptionalKernel(logging.Filter):
    """bitsandbytes warns at every CPU start that the optional ``kernels`` package (a faster 4-bit
    matmul) is missing; its own fallback is correct, so that one warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_QuietOptionalKernel())

# fields that may change between a run and its resumption (they do not change what a step does)
RESUMABLE_CHANGES = ("max_steps", "num_train_epochs", "save_steps", "save_total_limit", "logging_steps",
                     "report_to", "merge_lora")


# --- hashing -------------------------------------------------------------------------------------
def data_hash(examples: list[dict]) -> str:
    """Hash of what training reads from the examples (prompt, segments with meta, mask flag, and the
    text format where it is not the project's)."""
    return stable_hash([[e.get("prompt"), e.get("segments"), bool(e.get("mask_until_first_transition"))]
                        + ([e["text_format"]] if e.get("text_format", "project") != "project" else [])
                        for e in examples])


# --- data ----------------------------------------------------------------------------------------
def tokenize_examples(examples: list[dict], tokenizer: Any, sft: SFTConfig, *, progress: bool = True
                      ) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """``input_ids`` + ``labels`` rows for training, and counts (kept, dropped over length,
    truncated, dropped for having no loss token, tokens, loss tokens)."""
    rows: list[dict[str, list[int]]] = []
    stats = {"examples": len(examples), "kept": 0, "dropped": 0, "truncated": 0, "no_loss": 0,
             "tokens": 0, "loss_tokens": 0}
    bar = progress_lines.bar(len(examples), "tokenise", enabled=progress and progress_lines.mode() == "bar")
    for i, ex in enumerate(examples):
        bar.update(1)
        try:
            prompt, segments = ex["prompt"], ex["segments"]
        except (KeyError, TypeError):
            raise ValueError(f"training example {i} ({ex.get('key') if isinstance(ex, dict) else ex!r}) "
                             "needs 'prompt' and 'segments'") from None
        enc = tokenize_with_labels(
            tokenizer, prompt, segments,
            mask_until_first_transition=bool(ex.get("mask_until_first_transition", False)),
            max_length=None, eos=True, text_format=ex.get("text_format") or "project",
        )
        ids, labels = list(enc["input_ids"]), list(enc["labels"])
        if len(ids) != len(labels):
            raise ValueError(f"training example {ex.get('key', i)}: input_ids and labels differ in length")
        if len(ids) > sft.max_length:
            if sft.over_length == "drop":
                stats["dropped"] += 1
                continue
            ids, labels = ids[: sft.max_length], labels[: sft.max_length]
            stats["truncated"] += 1
        n_loss = sum(1 for t in labels if t != -100)
        if n_loss == 0:
            stats["no_loss"] += 1
            continue
        rows.append({"input_ids": ids, "labels": labels})
        stats["tokens"] += len(ids)
        stats["loss_tokens"] += n_loss
    bar.close()
    stats["kept"] = len(rows)
    return rows, stats


# --- devices, models, trainer --------------------------------------------------------------------
def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no GPU is visible")
    return device


def use_bf16(sft: SFTConfig, device: str) -> bool:
    """``sft.bf16``; None means on where the GPU supports it, off on CPU (TRL's default fails there)."""
    import torch

    if sft.bf16 is None:
        return device == "cuda" and torch.cuda.is_bf16_supported()
    if sft.bf16 and device != "cuda":
        raise ValueError("sft.bf16: true needs a GPU; set it to null (auto) or false on CPU")
    return sft.bf16


def training_args(sft: SFTConfig, output_dir: Path, *, device: str, bf16: bool, progress: bool = True) -> Any:
    """TRL ``SFTConfig`` for our settings. Create it before loading the model: under DeepSpeed ZeRO-3
    that is what makes ``from_pretrained`` partition the weights as they load."""
    import trl

    padding_free = sft.padding_free or sft.packing
    gc = sft.gradient_checkpointing
    # transformers >= 5.x renamed gradient_checkpointing to activation_checkpointing (old name deprecated)
    fields = {f.name for f in dataclasses.fields(trl.SFTConfig)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return trl.SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler_type,
        warmup_steps=min(sft.warmup_ratio, 0.9999),  # a float < 1 is a ratio of the total steps
        weight_decay=sft.weight_decay,
        optim=sft.optim,
        num_train_epochs=sft.num_train_epochs,
        max_steps=sft.max_steps,
        per_device_train_batch_size=sft.per_device_train_batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps,
        # examples are already cut to max_length; padding-free without packing needs None
        max_length=sft.max_length if (sft.packing or not padding_free) else None,
        packing=sft.packing,
        padding_free=padding_free,
        **{ckpt: gc, f"{ckpt}_kwargs": {"use_reentrant": False} if gc else None},
        bf16=bf16,
        fp16=False,
        use_cpu=device == "cpu",
        logging_steps=sft.logging_steps,
        save_strategy="steps",
        save_steps=sft.save_steps,
        save_total_limit=sft.save_total_limit,
        max_grad_norm=sft.max_grad_norm,
        report_to=[] if sft.report_to in ("none", "") else [r.strip() for r in sft.report_to.split(",")],
        seed=sft.seed,
        data_seed=sft.seed,
        disable_tqdm=not progress or progress_lines.mode() != "bar",  # lines: ProgressLines instead
        dataset_num_proc=None,
        remove_unused_columns=True,
    )


def check_recipe(sft: SFTConfig, world_size: int) -> None:
    """``recipe: official`` trains with a global batch of 1, as the official run: one process."""
    if sft.recipe == "official" and world_size > 1:
        raise ValueError(
            f"sft.recipe official trains with a global batch of 1 (the official run: one process, batch 1); under "
            f"{world_size} processes it would be {world_size}. Launch one process (with several GPUs visible it "
            "spreads the model over them), or use recipe project")


def official_optimizer(model: Any, sft: SFTConfig) -> Any:
    """The official run's optimizer: torch AdamW over every trainable parameter, one group, weight
    decay ``sft.weight_decay`` (0.01) on all of them, torch's default betas and eps; torch's fused
    implementation of the same update when ``sft.optim`` is ``adamw_torch_fused``."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    fused = sft.optim == "adamw_torch_fused" or None
    return torch.optim.AdamW(params, lr=sft.learning_rate, weight_decay=sft.weight_decay, fused=fused)


def _compute_dtype(sft: SFTConfig, device: str, bf16: bool) -> Any:
    import torch

    if device != "cuda":
        return torch.float32
    name = sft.bnb_4bit_compute_dtype
    if name == "bfloat16" and not bf16:
        name = "float16" if not torch.cuda.is_bf16_supported() else "bfloat16"
    return getattr(torch, name)


def load_model(base_model: str | Path, sft: SFTConfig, *, device: str, bf16: bool, args: Any = None) -> Any:
    """The model to train. full: float32 weights (bf16 autocast on GPU; DeepSpeed keeps fp32 masters);
    lora: frozen base in bf16 on GPU, float32 on CPU; qlora: 4-bit NF4 base with double quantisation,
    the other parameters frozen in the compute dtype (``kbit.prepare_4bit_for_lora``: bf16 activations); recipe official: bf16 weights (CPU too), spread over the
    GPUs one process sees when it sees several."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if sft.recipe == "official":
        kwargs["dtype"] = torch.bfloat16
        if device == "cuda" and torch.cuda.device_count() > 1:
            kwargs["device_map"] = "auto"
    if sft.attn_implementation or device == "cuda":
        kwargs["attn_implementation"] = sft.attn_implementation or "sdpa"
    if sft.method == "lora" and bf16:
        kwargs["dtype"] = torch.bfloat16
    if sft.use_kernels:
        if device != "cuda":
            raise ValueError("sft.use_kernels: true needs a GPU (Hub kernels are CUDA kernels); set it to false on CPU")
        kwargs["use_kernels"] = True
    if sft.method == "qlora":
        dist = str(getattr(getattr(args, "distributed_state", None), "distributed_type", ""))
        if "DEEPSPEED" in dist or "FSDP" in dist:
            raise ValueError("sft.method qlora runs on one GPU or data-parallel (configs/accelerate/multi_gpu.yaml), "
                             "not under DeepSpeed ZeRO-3 / FSDP: use method lora or full there")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ImportError("method qlora needs bitsandbytes: pip install 'bitsandbytes>=0.50.2'") from None
        from transformers import BitsAndBytesConfig

        from dualdistill.training.kbit import prepare_4bit_for_lora

        compute = _compute_dtype(sft, device, bf16)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=sft.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=sft.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
        index = args.local_process_index if args is not None else 0
        kwargs["device_map"] = {"": index if device == "cuda" else "cpu"}
        model = AutoModelForCausalLM.from_pretrained(str(base_model), **kwargs)
        return prepare_4bit_for_lora(model, compute)  # not peft's fp32 upcast: activations stay in `compute`
    return AutoModelForCausalLM.from_pretrained(str(base_model), **kwargs)


def quantization_summary(model: Any) -> dict[str, Any] | None:
    """How the model being trained is quantised (bitsandbytes 4-bit layers, their type), None when not."""
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    if not layers:
        return None
    state = getattr(layers[0].weight, "quant_state", None)
    return {"linear4bit_layers": len(layers), "quant_type": getattr(layers[0].weight, "quant_type", None),
            "double_quant": bool(getattr(state, "nested", False)),
            "compute_dtype": str(getattr(layers[0], "compute_dtype", None)).removeprefix("torch.")}


def ran_info(summary: dict[str, Any]) -> dict[str, Any]:
    """An SFT run's line in the run's ledger (``artifacts.record_ran``)."""
    keys = ("method", "recipe", "base_model", "model_dir", "kept", "dropped", "steps", "tokens", "loss_tokens",
            "seconds", "device", "bf16", "quantization", "tokenizer_class", "tokenizer_size", "peak_gpu_gb")
    return {"backend": f"sft-{summary.get('method')}", **{k: summary.get(k) for k in keys}}


def lora_config(sft: SFTConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout,
                      target_modules=sft.lora_target_modules, bias="none", task_type="CAUSAL_LM")


def progress_callback(desc: str) -> Any:
    """A transformers ``TrainerCallback`` that reports steps, loss, elapsed time and the time left as
    :class:`~dualdistill.common.progress.LineProgress` lines (used when progress goes out as lines)."""
    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        def __init__(self) -> None:
            self.bar: progress_lines.LineProgress | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = progress_lines.LineProgress(state.max_steps, desc, unit="steps")
                self.bar.n = state.global_step

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix_str(f"loss {logs['loss']:.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return ProgressLines()


def build_trainer(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], args: Any, sft: SFTConfig,
                  callbacks: list[Any] | None = None) -> Any:
    """TRL ``SFTTrainer`` over pre-tokenised rows (labels used as given)."""
    import datasets
    import trl

    if not rows:
        raise ValueError("no training examples left after tokenisation (all dropped or without loss tokens)")
    dataset = datasets.Dataset.from_list(rows)
    optimizers = (official_optimizer(model, sft), None) if sft.recipe == "official" else (None, None)
    return trl.SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=lora_config(sft) if sft.method in ("lora", "qlora") else None, callbacks=callbacks,
        optimizers=optimizers,
    )


# --- outputs -------------------------------------------------------------------------------------
def last_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint with the highest step in ``checkpoints`` (None if none)."""
    if not checkpoints.is_dir():
        return None
    found = [(int(p.name.split("-")[-1]), p) for p in checkpoints.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def write_loss_csv(log_history: list[dict[str, Any]], path: Path) -> Path:
    """The training log entries that carry a loss, one row per logging step."""
    rows = [r for r in log_history if "loss" in r]
    keys = ["step", "epoch", "loss"] + sorted({k for r in rows for k in r} - {"step", "epoch", "loss"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def merge_adapter(base_model: str | Path, adapter_dir: Path, model_dir: Path, tokenizer: Any, dtype: Any) -> Path:
    """Reload the base in full precision, merge the LoRA adapter into it, save a plain model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    model_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(model_dir))
    return model_dir


# --- the whole step --------------------------------------------------------------------------------
def train_sft(
    examples: list[dict],
    base_model: str | Path,
    output_dir: str | Path,
    sft: SFTConfig,
    *,
    tokenizer_path: str | Path | None = None,
    model_dir: str | Path | None = None,
    resume: bool = True,
    device: str = "auto",
    progress: bool = True,
    desc: str = "SFT",
) -> dict[str, Any]:
    """Fine-tune ``base_model`` on ``examples``; save a plain model to ``model_dir`` and return a summary.
    ``desc`` names the run in progress lines.

    A finished run with the same config, base and data is skipped (its stored summary is returned,
    with ``skipped: True``). ``resume=True`` continues from the last checkpoint in
    ``output_dir/checkpoints`` when only the fields in :data:`RESUMABLE_CHANGES` changed."""
    import torch
    from transformers import AutoTokenizer, set_seed

    output_dir = Path(output_dir)
    model_dir = Path(model_dir) if model_dir is not None else output_dir / "model"
    tok_src = tokenizer_path if tokenizer_path is not None else base_model
    if Path(base_model).exists() and model_dir.resolve() == Path(base_model).resolve():
        raise ValueError(f"model_dir {model_dir} is the base model's directory: choose another one")
    sft_dump = sft.model_dump(mode="json")
    ident = {"base": model_fingerprint(base_model), "tokenizer": model_fingerprint(tok_src),
             "data": data_hash(examples)}
    run_hash = stable_hash({**ident, "sft": sft_dump})
    resume_hash = stable_hash({**ident, "sft": {k: v for k, v in sft_dump.items() if k not in RESUMABLE_CHANGES}})

    stamp = read_stamp(model_dir)
    if stamp is not None and stamp.get("hash") == run_hash:
        log.info("%s: already trained with this config and data (hash %s); skipping", model_dir, run_hash)
        return {**stamp["summary"], "skipped": True}

    device = resolve_device(device)
    bf16 = use_bf16(sft, device)
    set_seed(sft.seed)
    args = training_args(sft, output_dir, device=device, bf16=bf16, progress=progress)
    check_recipe(sft, args.world_size)
    main = args.process_index == 0
    checkpoints = output_dir / "checkpoints"
    config_path = output_dir / "sft_config.json"
    old = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if main and checkpoints.is_dir() and (not resume or old.get("resume_hash") != resume_hash):
        why = "resume=False" if not resume else "the data or training settings changed"
        log.warning("%s: removing old checkpoints (%s)", checkpoints, why)
        shutil.rmtree(checkpoints)
    if main:
        write_json(config_path, {"base_model": str(base_model), "tokenizer": str(tok_src), "sft": sft_dump,
                                  **ident, "hash": run_hash, "resume_hash": resume_hash, "device": device,
                                  "bf16": bf16, "examples": len(examples)})
    _barrier(args)

    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    rows, stats = tokenize_examples(examples, tokenizer, sft, progress=progress and main)
    log.info("SFT data: %s", stats)
    model = load_model(base_model, sft, device=device, bf16=bf16, args=args)
    quantization = quantization_summary(model)
    lines = progress and progress_lines.mode() == "lines"
    trainer = build_trainer(model, tokenizer, rows, args, sft, callbacks=[progress_callback(desc)] if lines else None)

    last = last_checkpoint(checkpoints) if resume else None
    start_step = int(last.name.split("-")[-1]) if last else 0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.time() - t0
    state = trainer.state

    adapter_dir = output_dir / "adapter"
    if main and (model_dir / SFT_STAMP).is_file():  # an older model of ours: replace it, leave no stale files
        shutil.rmtree(model_dir)
    _barrier(args)
    if sft.method == "full":
        trainer.save_model(str(model_dir))  # collective under ZeRO-3; rank 0 writes
    else:
        trainer.save_model(str(adapter_dir))
    losses = [r["loss"] for r in state.log_history if "loss" in r]
    session_tokens = int(getattr(trainer, "_total_train_tokens", 0) or 0)
    summary = {
        "method": sft.method, "base_model": str(base_model), "model_dir": str(model_dir), **stats,
        "steps": int(state.global_step), "resumed_from_step": start_step, "epochs": float(state.epoch or 0),
        "final_loss": losses[-1] if losses else result.metrics.get("train_loss"),
        "first_loss": losses[0] if losses else None,
        "train_loss": result.metrics.get("train_loss"),
        "tokens_trained": session_tokens, "seconds": round(seconds, 2),
        "tokens_per_s": round(session_tokens / seconds, 1) if seconds > 0 else None,
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "device": device, "bf16": bf16, "hash": run_hash, "skipped": False, "recipe": sft.recipe,
        "weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "global_batch": sft.per_device_train_batch_size * sft.gradient_accumulation_steps * args.world_size,
        "quantization": quantization, "tokenizer_class": type(tokenizer).__name__, "tokenizer_size": len(tokenizer),
    }
    if main:
        if sft.method != "full":
            dtype = torch.bfloat16 if bf16 else torch.float32
            if sft.merge_lora:
                merge_adapter(base_model, adapter_dir, model_dir, tokenizer, dtype)
            else:
                shutil.copytree(adapter_dir, model_dir, dirs_exist_ok=True)
                tokenizer.save_pretrained(str(model_dir))
        write_loss_csv(state.log_history, output_dir / "loss.csv")
        write_json(output_dir / "summary.json", summary)
        write_json(model_dir / SFT_STAMP, {"hash": run_hash, "config": json.loads(config_path.read_text()),
                                        "summary": summary})
    _barrier(args)
    del trainer, model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return summary


def _barrier(args: Any) -> None:
    from accelerate import PartialState

    if args.world_size > 1:
        PartialState().wait_for_everyone()


# --- CLI -------------------------------------------------------------------------------------------
def _section(cfg: Any, name: str) -> SFTConfig:
    node: Any = cfg
    for part in name.split("."):
        if node is None or part not in type(node).model_fields:
            raise ValueError(f"--section {name}: no such config section")
        node = getattr(node, part)
    if node is None:  # e.g. student.stage0_sft unset: the sft section applies
        return cfg.sft
    if not isinstance(node, SFTConfig):
        raise ValueError(f"--section {name} is not an SFT config section")
    return node


def main(argv: list[str] | None = None) -> int:
    """``python -m dualdistill.training.sft PARAMS --examples F --base M --out D [--set K=V ...]``: one SFT run
    by hand (e.g. under ``accelerate launch``) with a config section of a params file."""
    ap = argparse.ArgumentParser(prog="python -m dualdistill.training.sft", description=__doc__.split("\n")[0])
    ap.add_argument("params", help="params YAML (its sft section, or --section, is used)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params fields (dotted)")
    ap.add_argument("--examples", required=True, help="JSONL of training examples")
    ap.add_argument("--base", required=True, help="base model dir or hub id")
    ap.add_argument("--out", required=True, help="work dir (checkpoints, adapter, loss.csv, summary.json)")
    ap.add_argument("--model-dir", default=None, help="where the plain model goes (default OUT/model)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the base)")
    ap.add_argument("--section", default="sft", help="config section: sft | student.stage0_sft | self_distill.sft")
    ap.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(a.params, dict(parse_override(o) for o in a.set))
    except ConfigError as err:
        print(f"error: {err}")
        return 2
    examples = read_jsonl(a.examples)
    if not examples:
        raise SystemExit(f"{a.examples}: no training examples")
    summary = train_sft(examples, a.base, a.out, _section(cfg, a.section), tokenizer_path=a.tokenizer,
                        model_dir=a.model_dir, resume=not a.no_resume, device=cfg.device, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
