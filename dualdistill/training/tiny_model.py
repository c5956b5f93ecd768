"""The embedded default's student S0 base: a tiny ``Qwen2ForCausalLM`` built locally (METHOD §5-6).

    path = ensure_tiny(cfg.student.tiny or TinyModelConfig(), RunPaths.of(cfg).tiny_base, corpus)
    dualdistill prepare-student params/smoke.yaml     # build (or reuse) outputs/<run>/models/tiny_base

The model has the 7B student's class with a few million parameters (sizes from
:class:`~dualdistill.config.TinyModelConfig`), randomly initialised from a seed. The tokenizer is a
byte-level BPE trained here with exactly the pipeline transformers 5.x rebuilds for a
``model_type=qwen2`` tokenizer on reload (NFC, the Qwen2 split regex with digits one by one,
byte-level, ``<|endoftext|>`` as unk), so reloaded ids are identical. Special tokens: the R1 ones
(BOS, EOS, user and assistant tags) and a pad token; the block tags (``<think>`` … ``</answer>``) are
single, non-special tokens so they decode. A chat template renders the "r1" prompt of
``formatting.build_prompt``. ``ensure_tiny`` rebuilds only when the directory is missing or the
hash stored beside it (config + corpus + build version) differs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from dualdistill.common import store
from dualdistill.common.hashing import stable_hash
from dualdistill.config import TinyModelConfig
from dualdistill.formats import formatting

log = logging.getLogger(__name__)

UNK_TOKEN = "<|endoftext|>"  # what Qwen2Tokenizer adds as unk on reload
PAD_TOKEN = "<｜▁pad▁｜>"
SPECIAL_TOKENS = [UNK_TOKEN, formatting.BOS_TOKEN, formatting.EOS_TOKEN, formatting.USER_TAG,
                  formatting.ASSISTANT_TAG, PAD_TOKEN]
TAG_TOKENS = [f"<{slash}{kind}>" for kind in formatting.BLOCK_KINDS for slash in ("", "/")]
BUILD_VERSION = 1  # bump when the build recipe changes
META_FILE = "tiny_build.json"
VOCAB_MULTIPLE = 64
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}" + formatting.USER_TAG + "{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}" + formatting.ASSISTANT_TAG + "{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + formatting.ASSISTANT_TAG + "{% endif %}"
)


def train_tokenizer(corpus: list[str], vocab_size: int) -> Any:
    """A ``Qwen2Tokenizer`` whose BPE is trained on ``corpus`` with the Qwen2 pipeline."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    if not corpus:
        raise ValueError("the tokenizer corpus is empty")
    bpe = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    n_added = len(TAG_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - n_added, 256 + len(SPECIAL_TOKENS)),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def texts() -> Any:  # added tokens are matched before BPE: keep them out of the merges
        for text in corpus:
            for tok in [*TAG_TOKENS, *SPECIAL_TOKENS]:
                text = text.replace(tok, "\n")
            yield text

    bpe.train_from_iterator(texts(), trainer=trainer, length=len(corpus))
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges, unk_token=UNK_TOKEN, bos_token=formatting.BOS_TOKEN,
        eos_token=formatting.EOS_TOKEN, pad_token=PAD_TOKEN,
        extra_special_tokens=[formatting.USER_TAG, formatting.ASSISTANT_TAG],
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 1 << 30
    return tok


def tiny_build_hash(cfg: TinyModelConfig, corpus: list[str]) -> str:
    """What decides the build: the sizes, the seed, the corpus (in order) and the recipe version."""
    return stable_hash({"cfg": cfg.model_dump(mode="json"), "corpus": stable_hash(corpus, 16), "version": BUILD_VERSION})


def build_tiny(cfg: TinyModelConfig, out_dir: str | Path, corpus: list[str]) -> Path:
    """Train the tokenizer, initialise the model from ``cfg.seed``, save both to ``out_dir``.

    The directory is written beside the target and moved into place, so a crash never leaves a
    half-built model. An existing ``out_dir`` that is not a tiny build is never overwritten."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    with store.build_directory(out_dir, META_FILE, "tiny-model") as tmp:
        t0 = time.perf_counter()
        tok = train_tokenizer(corpus, cfg.vocab_size)
        ids = tok.convert_tokens_to_ids
        vocab = -(-len(tok) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        config = Qwen2Config(
            vocab_size=vocab, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=cfg.max_position_embeddings,
            tie_word_embeddings=False, bos_token_id=ids(formatting.BOS_TOKEN),
            eos_token_id=ids(formatting.EOS_TOKEN), pad_token_id=ids(PAD_TOKEN),
        )
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(config).to(torch.float32).eval()
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
            do_sample=True, temperature=0.6, top_p=1.0, top_k=0, max_new_tokens=512,  # no truncation of the
            # distribution: what the embedded default always sampled with (top_p/top_k unset = this config)
        )
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        meta = {"hash": tiny_build_hash(cfg, corpus), "config": cfg.model_dump(mode="json"),
                "corpus_hash": stable_hash(corpus, 16), "corpus_texts": len(corpus), "version": BUILD_VERSION,
                "n_params": n_params, "tokenizer_size": len(tok), "model_vocab_size": vocab,
                "build_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    log.info("built tiny Qwen2 (%.2fM parameters, %d tokens) in %s", n_params / 1e6, len(tok), out_dir)
    return out_dir


def read_build_meta(out_dir: str | Path) -> dict[str, Any] | None:
    """The build meta of a tiny model directory, or None."""
    return store.read_build_meta(out_dir, META_FILE)


def ensure_tiny(cfg: TinyModelConfig, out_dir: str | Path, corpus: list[str]) -> Path:
    """``out_dir`` holding the tiny model for (cfg, corpus): reused when its stored hash matches."""
    out_dir = Path(out_dir)
    if store.current_build(out_dir, META_FILE, tiny_build_hash(cfg, corpus), ("config.json", "tokenizer.json")):
        return out_dir
    return build_tiny(cfg, out_dir, corpus)
