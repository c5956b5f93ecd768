"""A tiny *scripted* Qwen2 model dir for backend tests (vLLM server, in-process vLLM, HF).

    info = build_scripted_tiny(tmp_path / "tiny")   # {"dir", "trigger", "says", "eos_id", ...}

The model is a real ``Qwen2ForCausalLM`` (hidden 128, 2 layers, head_dim 64 — a size the vLLM CPU
attention kernels accept) with a byte-level BPE tokenizer trained here with exactly the Qwen2
pipeline (NFC, Qwen2 split regex, byte level, ``<|endoftext|>``), so both transformers 5.x and the
vLLM venv reload identical ids. Its weights are crafted so it behaves as a bigram table along one
script: after the last token of ``trigger`` it writes ``says`` and then EOS, deterministically at
any temperature ≤ 1; from any other token it babbles. The attention and MLP outputs are zeroed, so
the final hidden state is the embedding of the current token and ``lm_head`` row ``succ(x)`` is
aligned with it. That makes stop strings, EOS and token budgets testable on a random model. A chat
template in the r1 layout lets the chat endpoint continue a partial assistant turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRIGGER = "<code>\n"
SAYS = "print(42)</code>"
CORPUS = [
    "The answer is \\boxed{42}. Let me compute 6*7 with code.",
    "<think>\nWe need the remainder of 2**100 modulo 7.\n</think>\n",
    "<code>\nprint(pow(4064569, 4513230, 1039*4283))\n</code>\n<executor>\n3293631\n</executor>\n",
    "<answer>\nThe answer is \\boxed{3293631}\n</answer>\n",
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.",
    "def f(n):\n    return sum(i*i for i in range(n))\nprint(f(10))\n",
]


# the r1 layout (system, user and assistant tags) for the chat endpoint; no BOS, no EOS after turns
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
)


def train_tokenizer(vocab_size: int = 400, *, tag_tokens: bool = False) -> Any:
    """A byte-level BPE with the Qwen2 pipeline (METHOD §6), as a transformers tokenizer; with
    ``tag_tokens`` the block tags (``<think>`` … ``</answer>``) are single (non-special) tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    if tag_tokens:
        fast.add_tokens([AddedToken(f"<{s}{k}>", special=False, normalized=False)
                         for k in ("think", "code", "executor", "answer") for s in ("", "/")])
    return fast


def build_scripted_tiny(out_dir: str | Path, *, trigger: str | Sequence[str] = TRIGGER, says: str = SAYS,
                        seed: int = 0, tag_tokens: bool = False) -> dict[str, Any]:
    """Save the scripted tiny model + tokenizer to ``out_dir``; return what the tests need.

    With ``tag_tokens=True`` (block tags as single tokens) a script may hold a whole block, e.g.
    ``trigger=("\\n", ".\\n"), says="<code>print(42)</code>"``: after every newline (BPE merges
    ``".\\n"`` into one token, hence the second trigger) the model writes that code block, so the
    tool loop executes it on each turn. Several triggers: the script starts after the last token
    of any of them."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(tag_tokens=tag_tokens)
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    triggers = [trigger] if isinstance(trigger, str) else list(trigger)
    trigger_ids = [tokenizer(t, add_special_tokens=False)["input_ids"][-1] for t in triggers]
    chain = tokenizer(says, add_special_tokens=False)["input_ids"]
    if len(set(chain)) != len(chain) or set(trigger_ids) & set(chain) or eos_id in chain:
        raise ValueError(f"script tokens must be distinct and differ from the triggers: {chain} / {trigger_ids}")

    torch.manual_seed(seed)
    vocab = ((len(tokenizer) + 63) // 64) * 64
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        tie_word_embeddings=False, eos_token_id=eos_id, bos_token_id=eos_id, pad_token_id=eos_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # the residual stream carries only the current embedding
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.normal_(0, 1)
        head = model.lm_head.weight
        head.normal_(0, 0.02)
        unit = emb / emb.norm(dim=1, keepdim=True)
        start = unit[sorted(set(trigger_ids))].sum(0)
        head[chain[0]] = 3.0 * start / start.norm() * len(set(trigger_ids)) ** 0.5  # ~3 per trigger
        for prev, nxt in zip(chain, [*chain[1:], eos_id], strict=True):
            head[nxt] = 3.0 * unit[prev]
    model.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    reloaded = AutoTokenizer.from_pretrained(out_dir)
    probe = CORPUS[2] + "".join(triggers) + says
    if reloaded(probe)["input_ids"] != tokenizer(probe)["input_ids"]:
        raise RuntimeError("the reloaded tokenizer gives different ids (pipeline mismatch)")
    return {"dir": str(out_dir), "trigger": trigger, "says": says, "eos_id": eos_id,
            "trigger_id": trigger_ids[0], "trigger_ids": trigger_ids, "chain_ids": chain, "vocab_size": vocab}
