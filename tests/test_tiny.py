"""The tiny Qwen2 student: tokenizer and model survive save/reload with identical ids; caching."""

from __future__ import annotations

import json

import pytest

from dualdistill.config import TinyModelConfig
from dualdistill.formats import formatting
from dualdistill.training.tiny_model import (
    META_FILE,
    PAD_TOKEN,
    TAG_TOKENS,
    UNK_TOKEN,
    build_tiny,
    ensure_tiny,
    tiny_build_hash,
)
from dualdistill.world import tokenizer_corpus

SMALL = TinyModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=128, max_position_embeddings=512, vocab_size=600, seed=0)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return tokenizer_corpus(per_family=6)


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("tiny") / "tiny_base"
    return build_tiny(TinyModelConfig(), out, corpus)


def _texts(corpus: list[str]) -> list[str]:
    problem = corpus[-3]
    return [
        formatting.build_prompt("Compute 7^85 mod 613.", code=True) + corpus[-1],
        formatting.build_prompt(problem, code=False) + formatting.GENERATION_PREFIX,
        corpus[-2] + formatting.EOS_TOKEN,
        "Ünïcode café — 12345678901234 and \\boxed{−3} ÿ\r\n\tend",  # unseen chars: byte fallback
    ]


def test_reload_gives_identical_ids_offsets_and_decoding(built, corpus):
    from transformers import AutoTokenizer

    from dualdistill.training.tiny_model import train_tokenizer

    fresh = train_tokenizer(corpus, TinyModelConfig().vocab_size)
    tok = AutoTokenizer.from_pretrained(built)
    assert type(tok).__name__ == "Qwen2Tokenizer" and len(tok) == len(fresh)
    for text in _texts(corpus):
        ids = tok(text)["input_ids"]
        assert ids == fresh(text)["input_ids"]
        assert tok.decode(ids) == text
        enc = tok(text, return_offsets_mapping=True)
        spans = [tuple(sp) for sp in enc["offset_mapping"] if sp[1] > sp[0]]
        spans = [sp for i, sp in enumerate(spans) if i == 0 or sp != spans[i - 1]]  # multi-byte chars
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # gap-free char spans
    prompt = _texts(corpus)[0]
    enc = tok(prompt, return_offsets_mapping=True)
    start = prompt.index("<think>")
    i = next(j for j, (s, _) in enumerate(enc["offset_mapping"]) if s == start)
    assert tok.convert_ids_to_tokens(enc["input_ids"][i]) == "<think>"  # masks rely on these spans


def test_special_tokens_tags_and_digits(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    for t in [formatting.BOS_TOKEN, formatting.EOS_TOKEN, formatting.USER_TAG, formatting.ASSISTANT_TAG,
              PAD_TOKEN, UNK_TOKEN, *TAG_TOKENS]:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == t, t
    assert tok.eos_token == formatting.EOS_TOKEN and tok.bos_token == formatting.BOS_TOKEN
    assert tok.pad_token == PAD_TOKEN and tok.unk_token == UNK_TOKEN
    # tags are not special: they survive skip_special_tokens, the R1 tokens do not
    ids = tok(formatting.BOS_TOKEN + "<think>\nhi\n</think>\n" + formatting.EOS_TOKEN)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nhi\n</think>\n"
    digits = tok.convert_ids_to_tokens(tok("x 1234567 y", add_special_tokens=False)["input_ids"])
    assert [d for d in digits if d.strip("Ġ").isdigit()] == list("1234567")
    msgs = [{"role": "system", "content": formatting.SYSTEM_PROMPT + formatting.CODE_INSTRUCTION},
            {"role": "user", "content": "Compute 7^85 mod 613."}]
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == formatting.build_prompt("Compute 7^85 mod 613.", code=True)


def test_model_reloads_and_generates(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = json.loads((built / META_FILE).read_text())
    assert 1e6 < meta["n_params"] < 10e6  # "a few million"
    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size >= len(tok) and model.config.vocab_size % 64 == 0
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    assert model.config.hidden_size == 256 and model.config.num_hidden_layers == 4
    enc = tok(formatting.build_prompt("Compute 7^85 mod 613.", code=True) + formatting.GENERATION_PREFIX,
              return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=True, temperature=0.6,
                             pad_token_id=tok.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 8 and int(new.max()) < model.config.vocab_size
    assert isinstance(tok.decode(new), str)


def test_build_is_deterministic(tmp_path, corpus):
    import torch
    from safetensors.torch import load_file

    a = build_tiny(SMALL, tmp_path / "a", corpus)
    b = build_tiny(SMALL, tmp_path / "b", corpus)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    c = build_tiny(SMALL.model_copy(update={"seed": 1}), tmp_path / "c", corpus)
    wc = load_file(c / "model.safetensors")
    assert not torch.equal(wa["model.embed_tokens.weight"], wc["model.embed_tokens.weight"])


def test_ensure_tiny_caches_and_rebuilds_on_change(tmp_path, corpus):
    out = tmp_path / "models" / "tiny_base"
    ensure_tiny(SMALL, out, corpus)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert json.loads((out / META_FILE).read_text())["hash"] == tiny_build_hash(SMALL, corpus)
    ensure_tiny(SMALL, out, corpus)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    bigger = SMALL.model_copy(update={"num_hidden_layers": 3})
    ensure_tiny(bigger, out, corpus)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    ensure_tiny(bigger, out, corpus[:-5])  # a different corpus is a different build
    assert json.loads((out / META_FILE).read_text())["hash"] == tiny_build_hash(bigger, corpus[:-5])
    assert not list(out.parent.glob(".*tmp*"))


def test_build_refuses_to_overwrite_foreign_dirs(tmp_path, corpus):
    foreign = tmp_path / "checkpoint"
    foreign.mkdir()
    (foreign / "weights.bin").write_text("precious")
    with pytest.raises(FileExistsError, match="not a tiny-model build"):
        build_tiny(SMALL, foreign, corpus)
    with pytest.raises(ValueError, match="corpus is empty"):
        build_tiny(SMALL, tmp_path / "empty", [])
