"""A stand-in for the 7B student: a tiny random-weight ``Qwen2ForCausalLM`` with the real tokenizer.

    path = build_standin("outputs/standin_r1_7b", seed=0)   # ~3-4 s, 51 MB; reused when current
    model = AutoModelForCausalLM.from_pretrained(path); tok = AutoTokenizer.from_pretrained(path)
    python -m dualdistill.training.standin OUT_DIR [--seed 0] [--think-prefix] [--force]

The directory looks like a hub download of DeepSeek-R1-Distill-Qwen-7B (``config.json``,
``model.safetensors``, ``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.jinja``) so code paths meant for the real model (the hf and vllm backends, SFT,
loss masks, chat templates) can run end to end on a CPU without any download. Only the sizes are
small: hidden 128, 2 layers, 2 attention heads of 64 (head sizes vLLM's CPU backend accepts), 1 KV
head; the vocabulary is the 7B's padded 152,064 rows (covering all 151,665 token ids), embeddings
tied, weights stored in bfloat16 like the real checkpoint (19.9M parameters: model.safetensors
40 MB, tokenizer.json 11 MB). Everything else copies the 7B's config
(rope theta, RMSNorm epsilon, context length, sliding-window fields) and its sampling defaults
(temperature 0.6, top-p 0.95). Its outputs are random: it is for plumbing, never for results. It is
built into an output directory and must never be committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import build_directory, current_build, read_build_meta
from dualdistill.training import r1_tokenizer as r1

log = logging.getLogger(__name__)

META_FILE = "standin_build.json"
BUILD_VERSION = 1
# DeepSeek-R1-Distill-Qwen-7B's config.json (Qwen2.5-Math-7B's architecture) minus the sizes
REAL_7B_CONFIG: dict[str, Any] = {
    "vocab_size": 152_064, "max_position_embeddings": 131_072, "rope_theta": 10_000.0, "rms_norm_eps": 1e-6,
    "hidden_act": "silu", "initializer_range": 0.02, "attention_dropout": 0.0, "use_cache": True,
    "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28,
}
STANDIN_SIZES: dict[str, int] = {
    "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
# the real generation_config.json's sampling defaults
GENERATION_DEFAULTS: dict[str, Any] = {"do_sample": True, "temperature": 0.6, "top_p": 0.95}
REQUIRED_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                  "tokenizer_config.json")


def standin_config(**overrides: Any) -> Any:
    """The stand-in's ``Qwen2Config``: the 7B's settings with :data:`STANDIN_SIZES`, tied embeddings,
    bos/eos/pad ids of the R1 tokenizer. ``overrides`` replace any field."""
    from transformers import Qwen2Config

    fields: dict[str, Any] = {**REAL_7B_CONFIG, **STANDIN_SIZES, "tie_word_embeddings": True,
                              "bos_token_id": r1.BOS_ID, "eos_token_id": r1.EOS_ID, "pad_token_id": r1.EOS_ID,
                              **overrides}
    if fields["vocab_size"] < r1.N_TOKENS:
        raise ValueError(f"vocab_size {fields['vocab_size']} does not cover the {r1.N_TOKENS} token ids")
    if fields["hidden_size"] // fields["num_attention_heads"] not in (64, 128):
        raise ValueError("head_dim (hidden_size / num_attention_heads) must be 64 or 128 for vLLM's CPU backend")
    return Qwen2Config(**fields)


def standin_build_hash(seed: int, think_prefix: bool, overrides: dict[str, Any]) -> str:
    """What decides a build: seed, sizes, the tokenizer build and the recipe version."""
    return stable_hash({"seed": seed, "overrides": overrides, "sizes": STANDIN_SIZES, "real": REAL_7B_CONFIG,
                       "generation": GENERATION_DEFAULTS, "tokenizer": r1.r1_build_hash(think_prefix),
                       "version": BUILD_VERSION})


def build_standin(out_dir: str | Path, seed: int = 0, *, think_prefix: bool = False, force: bool = False,
                  **overrides: Any) -> Path:
    """``out_dir`` holding the stand-in (model + R1 tokenizer), built unless a matching build is there."""
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    build_hash = standin_build_hash(seed, think_prefix, overrides)
    if not force and current_build(out_dir, META_FILE, build_hash, REQUIRED_FILES):
        return out_dir
    with build_directory(out_dir, META_FILE, "stand-in") as tmp:
        t0 = time.perf_counter()
        config = standin_config(**overrides)
        tok = r1.make_r1_tokenizer(think_prefix=think_prefix)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(config).eval()
        model = model.to(torch.bfloat16)
        model.generation_config = GenerationConfig(bos_token_id=r1.BOS_ID, eos_token_id=r1.EOS_ID,
                                                   pad_token_id=r1.EOS_ID, **GENERATION_DEFAULTS)
        model.save_pretrained(tmp)
        r1.save_r1_tokenizer(tok, tmp)
        n_params = sum(p.numel() for p in model.parameters())
        meta = {"hash": build_hash, "seed": seed, "think_prefix": think_prefix, "overrides": overrides,
                "version": BUILD_VERSION, "n_params": n_params, "tokenizer_size": len(tok),
                "model_vocab_size": config.vocab_size, "tokenizer_hash": r1.r1_build_hash(think_prefix),
                "bytes_on_disk": sum(f.stat().st_size for f in tmp.iterdir()),
                "build_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("built the 7B stand-in (%.1fM parameters) in %s", n_params / 1e6, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="build (or reuse) a tiny random stand-in for DeepSeek-R1-Distill-Qwen-7B")
    ap.add_argument("out_dir", help="output directory (never commit it)")
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    ap.add_argument("--think-prefix", action="store_true",
                    help="chat template with the later revision's generation prompt <｜Assistant｜><think>\\n")
    ap.add_argument("--force", action="store_true", help="rebuild even when a matching build is there")
    args = ap.parse_args(argv)
    out = build_standin(args.out_dir, seed=args.seed, think_prefix=args.think_prefix, force=args.force)
    print(json.dumps({"out_dir": str(out), **(read_build_meta(out, META_FILE) or {})}, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
