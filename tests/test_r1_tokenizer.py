"""The offline R1-Distill-Qwen tokenizer equals tiktoken on the same ranks, keeps its ids on reload,
carries the real added tokens, flags and chat template; the 7B stand-in loads and generates."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from dualdistill.common.store import read_build_meta
from dualdistill.formats import formatting
from dualdistill.training import r1_tokenizer as r1
from dualdistill.training.standin import GENERATION_DEFAULTS, META_FILE, build_standin
from tests.conftest import DUALDISTILL_DATA

TRAJECTORY = [
    formatting.Segment("think", "We need 4064569^4513230 mod 1039*4283; too big by hand."),
    formatting.Segment("transition", formatting.TEXT_TO_CODE),
    formatting.Segment("code", "print(pow(4064569, 4513230, 1039*4283))"),
    formatting.Segment("executor", "3293631"),
    formatting.Segment("answer", formatting.answer_text("3293631")),
]


def _texts() -> list[str]:
    rng = random.Random(0)
    alphabet = ([chr(c) for c in range(32, 127)] + list("éüßçñøåæœ€£¥°±×÷√∞≤≥≠∑∫πθλΩ") + list("中文数学题答案の問題")
                + list("😀🚀👍🏽") + ["e\u0301", "A\u030a", "\u200d", "\ufe0f", "\t", "\n", "\r\n", "  ", "   "])
    texts = [
        # math
        "Let $f(x) = \\frac{x^2 - 1}{x + 1}$. Find $\\sum_{k=1}^{100} f(k)$; the answer is \\boxed{4950}.",
        "2^{10} = 1024, 3^5=243 and (a+b)^2 \\ge 4ab \\iff (a-b)^2 \\geq 0. \\(\\sqrt{2}\\approx 1.41421356\\)",
        "How many integers n, 1 <= n <= 10^6, satisfy n ≡ 3 (mod 7)? ⌊10^6/7⌋ = 142857.",
        # code
        "def f(n: int) -> int:\n    total = 0\n    for i in range(n):\n\tif i % 3 == 0 or i % 5 == 0:\n"
        "            total += i  # sum\n    return total\n\n\nprint(f(1000))\r\n",
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.factor(x**4 - 1))  \n    \n",
        "```python\nwhile True: break\n```\n<code>\nprint('hi')\n</code>\n<executor>\nhi\n</executor>\n",
        # unicode (NFC changes some of these), whitespace runs
        "Ünïcode café naïve — “quotes” ‘single’ … ½ ¼ ∀x∈ℝ: x²≥0; Ωmega ＦＵＬＬ　ｗｉｄｔｈ",
        "中文：求方程 x²+1=0 的解。日本語のテキストと한국어 텍스트, Русский текст, العربية, हिन्दी.",
        "e\u0301 A\u030a n\u0303 (decomposed) vs é Å ñ; emoji 👨‍👩‍👧 🏳️‍🌈 👍🏽 and ZWJ\u200d.",
        "   leading spaces\n\n\n\ttabs\t\t and trailing   \n \n  \r\n\r\n",
        # DeepSeek tags, added tokens inside text, tags glued to words and punctuation
        formatting.build_prompt("Compute 7^85 mod 613.", code=True) + formatting.GENERATION_PREFIX
        + formatting.render(TRAJECTORY) + formatting.EOS_TOKEN,
        "a<think>b</think>c<｜User｜><｜Assistant｜>x<|EOT|><|fim_prefix|>y<tool_call>{}</tool_call><|vision_pad|>",
        "</code>\n\n<executor>\n\n</executor>.</answer>)<answer>\\boxed{-1}</answer>\n<｜end▁of▁sentence｜>",
        "<|endoftext|> <|im_start|>user<|im_end|> are plain text here",
        # long digits
        "12345678901234567890" * 5 + " 3.14159265358979323846 -0.000001 1e-9 1,000,000",
        "n = 10^(10^12) + 7; 99999999999999999999999 % 1039 = ?",
    ]
    texts.append(formatting.render(TRAJECTORY))
    for _ in range(200):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))))
    ranks = r1.load_ranks()  # vocabulary pieces as text (those that are valid UTF-8)
    for token in sorted(ranks, key=ranks.__getitem__)[::97]:
        try:
            texts.append(token.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    for name in ("test/math500_test.jsonl", "test/combinatorics300.jsonl"):
        path = DUALDISTILL_DATA / name
        if path.exists():
            texts.extend(path.read_text().splitlines()[:150])
    return texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _texts()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return r1.build_r1_tokenizer(tmp_path_factory.mktemp("r1") / "tokenizer")


@pytest.fixture(scope="module")
def tok(built: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built)


@pytest.fixture(scope="module")
def fresh() -> Any:
    return r1.make_r1_tokenizer()


@pytest.fixture(scope="module")
def tiktoken_enc() -> Any:
    return r1.tiktoken_encoding()


def test_ranks_are_the_pinned_qwen2_ranks() -> None:
    ranks = r1.load_ranks()
    assert r1.file_sha256(r1.ranks_path()) == r1.RANKS_SHA256
    assert len(ranks) == r1.N_RANKS == 151_643 and sorted(ranks.values()) == list(range(r1.N_RANKS))


def test_recovered_merges_one_per_multibyte_token() -> None:
    ranks = r1.load_ranks()
    merges = r1.recover_merges(ranks)
    assert len(merges) == r1.N_MERGES == len(ranks) - 256
    results = [ranks[a + b] for a, b in merges]
    assert results == sorted(results) and len(set(results)) == len(results)
    assert all(ranks[a] < ranks[a + b] and ranks[b] < ranks[a + b] for a, b in merges)


def test_ids_equal_tiktoken(tok: Any, fresh: Any, tiktoken_enc: Any, texts: list[str]) -> None:
    assert len(texts) > 1000
    mismatches = []
    for text in texts:
        want = tiktoken_enc.encode(r1.nfc(text), allowed_special="all")
        got = tok(text)["input_ids"]
        if got != want or fresh(text)["input_ids"] != want:
            mismatches.append(text)
    assert not mismatches, f"{len(mismatches)} texts differ from tiktoken, e.g. {mismatches[:3]!r}"


def test_reload_keeps_ids_added_tokens_and_settings(built: Path, tok: Any, fresh: Any, texts: list[str]) -> None:
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert len(tok) == len(fresh) == r1.N_TOKENS == 151_665
    assert tok.get_vocab() == fresh.get_vocab()
    assert {i: (str(t), t.special) for i, t in tok.added_tokens_decoder.items()} == \
           {i: (str(t), t.special) for i, t in fresh.added_tokens_decoder.items()}
    for text in texts[:40]:
        ids = tok(text)["input_ids"]
        assert ids == fresh(text)["input_ids"]
        assert tok.decode(ids) == r1.nfc(text)
    assert tok.model_max_length == r1.MODEL_MAX_LENGTH == 16384
    assert tok.chat_template == fresh.chat_template == r1.chat_template()
    cfg = json.loads((built / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True and cfg["unk_token"] is None and cfg["model_max_length"] == 16384


def test_added_tokens_ids_and_special_flags(tok: Any) -> None:
    expected = {151643: ("<｜end▁of▁sentence｜>", True), 151644: ("<｜User｜>", False),
                151645: ("<｜Assistant｜>", False), 151646: ("<｜begin▁of▁sentence｜>", True),
                151647: ("<|EOT|>", False), 151648: ("<think>", False), 151649: ("</think>", False),
                151650: ("<|quad_start|>", True), 151651: ("<|quad_end|>", True), 151652: ("<|vision_start|>", True),
                151653: ("<|vision_end|>", True), 151654: ("<|vision_pad|>", True), 151655: ("<|image_pad|>", True),
                151656: ("<|video_pad|>", True), 151657: ("<tool_call>", False), 151658: ("</tool_call>", False),
                151659: ("<|fim_prefix|>", False), 151660: ("<|fim_middle|>", False),
                151661: ("<|fim_suffix|>", False), 151662: ("<|fim_pad|>", False), 151663: ("<|repo_name|>", False),
                151664: ("<|file_sep|>", False)}
    got = {i: (t.content, t.special) for i, t in tok.added_tokens_decoder.items()}
    assert got == expected
    for i, (content, _) in expected.items():
        assert tok(content)["input_ids"] == [i] and tok.convert_ids_to_tokens(i) == content


def test_bos_eos_pad_and_no_automatic_bos(tok: Any) -> None:
    assert (tok.bos_token, tok.bos_token_id) == (formatting.BOS_TOKEN, 151646)
    assert (tok.eos_token, tok.eos_token_id) == (formatting.EOS_TOKEN, 151643)
    assert (tok.pad_token, tok.pad_token_id) == (formatting.EOS_TOKEN, 151643)
    assert tok.unk_token is None
    ids = tok("hello")["input_ids"]
    assert r1.BOS_ID not in ids and r1.EOS_ID not in ids  # the prompt text carries BOS (DESIGN §9)
    assert tok(formatting.BOS_TOKEN + "hello")["input_ids"] == [r1.BOS_ID, *ids]
    assert "<|endoftext|>" not in tok.get_vocab()  # R1-Distill replaced it; it is plain text here
    assert len(tok("<|endoftext|>")["input_ids"]) > 1


def test_public_anchor_user_hello(tok: Any) -> None:
    # deepseek-ai/DeepSeek-R1 issue #151 shows the real 7B tokenizer giving ...151644, 14990 for "<｜User｜>hello"
    assert tok("<｜User｜>hello")["input_ids"] == [151644, 14990]


def test_think_tags_are_single_non_special_tokens(tok: Any) -> None:
    for tag in ("<think>", "</think>"):
        ids = tok(tag)["input_ids"]
        assert len(ids) == 1 and not tok.added_tokens_decoder[ids[0]].special
        assert tok.decode(ids, skip_special_tokens=True) == tag  # survives skip_special_tokens
    ids = tok("<think>\nreason\n</think>\n")["input_ids"]
    assert ids[0] == r1.N_RANKS + 5 and r1.N_RANKS + 6 in ids


def test_code_tag_splits_and_merges_with_newline(tok: Any) -> None:
    def pieces(text: str) -> list[str]:
        return [tok.decode([i]) for i in tok(text)["input_ids"]]

    assert pieces("<code>") == ["<", "code", ">"]
    assert pieces("<code>\n") == ["<", "code", ">\n"]  # the newline merges into the tag's end
    assert pieces("<code>\n\n") == ["<", "code", ">\n\n"]
    assert pieces("</code>\n") == ["</", "code", ">\n"]
    for kind in ("executor", "answer"):
        opening, closing = pieces(f"<{kind}>\n"), pieces(f"</{kind}>\n")
        assert len(opening) >= 3 and opening[-1] == ">\n" and "".join(opening) == f"<{kind}>\n"
        assert closing[0] == "</" and closing[-1] == ">\n"
    # a block's last line merges its newline into the preceding punctuation, not into "</"
    assert pieces("print(1)\n</code>")[-4:] == [")\n", "</", "code", ">"]
    # the stop string "</code>" ends inside the token ">\n" when a newline follows
    stop = pieces(formatting.CODE_STOP + "\n")
    assert "".join(stop[:-1]) + stop[-1][:1] == formatting.CODE_STOP and len(stop[-1]) == 2


def test_chat_template_user_turn_and_generation_prompt(tok: Any) -> None:
    problem = "Compute 7^85 mod 613."
    system = formatting.SYSTEM_PROMPT + formatting.CODE_INSTRUCTION
    messages = [{"role": "system", "content": system}, {"role": "user", "content": problem}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == formatting.build_prompt(problem, code=True)
    assert text == f"{formatting.BOS_TOKEN}{system}<｜User｜>{problem}<｜Assistant｜>"
    ids = tok(text)["input_ids"]
    assert ids[0] == r1.BOS_ID and ids[-1] == 151645 and ids.count(r1.BOS_ID) == 1
    bare = tok.apply_chat_template(messages[1:], add_generation_prompt=False, tokenize=False)
    assert bare == f"{formatting.BOS_TOKEN}<｜User｜>{problem}"
    history = [*messages, {"role": "assistant", "content": "<think>\nlong\n</think>\n\nThe answer is 4."},
               {"role": "user", "content": "Again."}]
    assert tok.apply_chat_template(history, add_generation_prompt=True, tokenize=False) == (
        f"{formatting.BOS_TOKEN}{system}<｜User｜>{problem}<｜Assistant｜>\n\nThe answer is 4."
        f"{formatting.EOS_TOKEN}<｜User｜>Again.<｜Assistant｜>")


def test_chat_template_think_prefix_variant() -> None:
    from jinja2 import Template

    render = Template(r1.chat_template(think_prefix=True)).render
    text = render(messages=[{"role": "user", "content": "Hi"}], bos_token=formatting.BOS_TOKEN,
                  add_generation_prompt=True)
    assert text == f"{formatting.BOS_TOKEN}<｜User｜>Hi<｜Assistant｜><think>\n"
    assert text == formatting.build_prompt("Hi", code=False).replace(formatting.SYSTEM_PROMPT, "") \
        + formatting.GENERATION_PREFIX
    assert r1.r1_build_hash(True) != r1.r1_build_hash(False)


def test_build_is_reused_rebuilt_and_never_clobbers(built: Path, tmp_path: Path) -> None:
    stamp = (built / "tokenizer.json").stat().st_mtime_ns
    assert r1.build_r1_tokenizer(built) == built
    assert (built / "tokenizer.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    meta = read_build_meta(built, r1.META_FILE)
    assert meta is not None and meta["hash"] == r1.r1_build_hash() and meta["tokenizer_size"] == r1.N_TOKENS
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        r1.build_r1_tokenizer(foreign)
    assert (foreign / "notes.txt").read_text() == "keep"


# --- the 7B stand-in -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin(tmp_path_factory.mktemp("standin") / "r1_7b", seed=0)


def test_standin_loads_and_generates_on_cpu(standin: Path, tok: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(standin)
    st_tok = AutoTokenizer.from_pretrained(standin)
    assert type(model).__name__ == "Qwen2ForCausalLM" and type(st_tok).__name__ == "Qwen2Tokenizer"
    assert model.config.vocab_size >= len(st_tok) == r1.N_TOKENS
    assert max(st_tok.get_vocab().values()) < model.config.vocab_size
    assert model.get_input_embeddings().weight.shape[0] == model.config.vocab_size
    assert (model.config.bos_token_id, model.config.eos_token_id) == (r1.BOS_ID, r1.EOS_ID)
    assert model.config.hidden_size // model.config.num_attention_heads in (64, 128)
    gen = GenerationConfig.from_pretrained(standin)
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (r1.BOS_ID, r1.EOS_ID, r1.EOS_ID)
    assert {k: getattr(gen, k) for k in GENERATION_DEFAULTS} == GENERATION_DEFAULTS
    prompt = formatting.build_prompt("What is 2+2?", code=True) + formatting.GENERATION_PREFIX
    enc = st_tok(prompt, return_tensors="pt")
    assert enc["input_ids"][0].tolist() == tok(prompt)["input_ids"]
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    assert new.numel() >= 1 and int(new.max()) < model.config.vocab_size
    st_tok.decode(new)


def test_standin_is_small_and_reused(standin: Path) -> None:
    assert (standin / "model.safetensors").stat().st_size < 45e6  # bf16, tied embeddings
    assert not (standin / "pytorch_model.bin").exists()
    stamp = (standin / "model.safetensors").stat().st_mtime_ns
    assert build_standin(standin, seed=0) == standin
    assert (standin / "model.safetensors").stat().st_mtime_ns == stamp
    meta = json.loads((standin / META_FILE).read_text())
    assert meta["model_vocab_size"] >= meta["tokenizer_size"] == r1.N_TOKENS
    cfg = json.loads((standin / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True and cfg["model_type"] == "qwen2"


VLLM_SCRIPT = '''
import json, sys

def main():
    from vllm import LLM, SamplingParams
    spec = json.loads(sys.argv[1])
    llm = LLM(model=spec["model"], dtype="float32", max_model_len=2048, seed=0)
    out = llm.generate([spec["prompt"]], SamplingParams(max_tokens=6, temperature=0.6, seed=1, ignore_eos=True))[0]
    print("RESULT " + json.dumps({"size": len(llm.get_tokenizer()), "prompt_ids": list(out.prompt_token_ids),
                                  "gen": list(out.outputs[0].token_ids)}))

if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
@pytest.mark.vllm
def test_standin_runs_in_vllm_cpu(standin: Path, tok: Any, tmp_path: Path) -> None:
    """vLLM's CPU backend (``.venv-vllm``, ~1.5 min) accepts the stand-in's sizes and the tokenizer's ids."""
    import os
    import subprocess

    vllm_python = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
    if not vllm_python.exists():
        pytest.fail(f"{vllm_python} not found: run scripts/setup_vllm_cpu.sh to create .venv-vllm")
    script = tmp_path / "run_standin.py"
    script.write_text(VLLM_SCRIPT)
    prompt = formatting.build_prompt("What is 2+2?", code=True) + formatting.GENERATION_PREFIX + "<code>\nprint(1)\n"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([str(vllm_python), str(script), json.dumps({"model": str(standin), "prompt": prompt})],
                          capture_output=True, text=True, timeout=540, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["size"] == r1.N_TOKENS
    assert result["prompt_ids"] == tok(prompt)["input_ids"]  # one BOS, from the text
    assert len(result["gen"]) == 6 and max(result["gen"]) < json.loads((standin / "config.json").read_text())["vocab_size"]
