"""Loss masks: every rule on hand-built trajectories, a property test against the rules computed
independently per segment, the straddle rule, and agreement with the official per-token-decode rule."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualdistill.formats import formatting as F
from dualdistill.formats.formatting import Segment
from dualdistill.report.mask_views import mask_pieces, mask_view_ansi, mask_view_html
from dualdistill.training.masking import IGNORE_INDEX, code_status, tokenize_with_labels, trained_char_spans
from tests.helpers_tiny import train_tokenizer

EOS = "<|endoftext|>"
PROMPT = F.build_prompt("Compute 4064569^4513230 mod 4450037.", code=True)
TAGS = [f"<{k}>" for k in F.BLOCK_KINDS] + [f"</{k}>" for k in F.BLOCK_KINDS]
CORPUS = [
    "We need the remainder. Let me compute it with code. So the answer is 12.",
    "print(pow(4064569, 4513230, 1039*4283))\nTraceback (most recent call last): ZeroDivisionError",
    F.SYSTEM_PROMPT + F.CODE_INSTRUCTION,
    *sorted(F.KNOWN_TRANSITIONS),
    F.CALL_CAP_NOTICE,
]


def _bpe(corpus: list[str], added: list[str], *, split_words: bool, vocab_size: int = 600):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split_words)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in added])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


@pytest.fixture(scope="module")
def aligned():
    """Token boundaries fall on every segment boundary: tags, newline and prompt markers are
    added tokens, so a segment never shares a token with its neighbour."""
    return _bpe(CORPUS, [*TAGS, "\n", F.BOS_TOKEN, F.USER_TAG, F.ASSISTANT_TAG], split_words=True)


@pytest.fixture(scope="module")
def merging():
    """No pre-tokenizer split: BPE merges run across newlines and tags, so tokens straddle."""
    corpus = CORPUS + ["".join(F.render(segs) for segs, _ in _realistic()), "</think>\nWait, </code>\n<executor>\n</executor>\n<think>\n"]
    return _bpe(corpus, [], split_words=False, vocab_size=800)


@pytest.fixture(scope="module")
def qwen_like():
    """The Qwen2 pipeline (NFC, Qwen2 split regex, byte level) of the tiny student."""
    return train_tokenizer(600)


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def split_text(tok, enc) -> tuple[str, str]:
    """(trained text, masked text) decoded from the token ids and labels."""
    ids, labels = enc["input_ids"], enc["labels"]
    trained = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    masked = [i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE_INDEX]
    return decode(tok, trained), decode(tok, masked)


def R(*segs: Segment) -> str:
    return F.render(list(segs))


THINK = Segment("think", "We need the remainder.")
ANSWER = Segment("answer", "The answer is \\boxed{12}")


# --- every rule, hand-built ----------------------------------------------------------------------
def test_prompt_masked_completion_and_eos_trained(aligned):
    enc = tokenize_with_labels(aligned, PROMPT, [THINK, ANSWER])
    trained, masked = split_text(aligned, enc)
    assert masked == PROMPT
    assert trained == R(THINK, ANSWER) + EOS
    assert enc["input_ids"][-1] == aligned.eos_token_id and enc["labels"][-1] == aligned.eos_token_id
    no_eos = tokenize_with_labels(aligned, PROMPT, [THINK, ANSWER], eos=False)
    assert split_text(aligned, no_eos)[0] == R(THINK, ANSWER)
    assert enc["num_trained"] == sum(lab != IGNORE_INDEX for lab in enc["labels"])


def test_executor_and_notice_masked_ok_code_trained(aligned):
    code = Segment("code", "print(3*4)", {"status": "ok"})
    ex = Segment("executor", "12", {"status": "ok"})
    notice = Segment("notice", F.CALL_CAP_NOTICE)
    enc = tokenize_with_labels(aligned, PROMPT, [THINK, code, ex, notice, ANSWER], eos=False)
    trained, masked = split_text(aligned, enc)
    assert trained == R(THINK, code, ANSWER)
    assert masked == PROMPT + R(ex, notice)


@pytest.mark.parametrize("status", ["error", "timeout", "killed", "not_run"])
def test_failed_or_unrun_code_masked_with_its_newline(aligned, status):
    bad = Segment("code", "print(1/0)", {"status": status})
    ex = Segment("executor", "ZeroDivisionError: division by zero", {"status": status})
    good = Segment("code", "print(3*4)", {"status": "ok"})
    ok_ex = Segment("executor", "12", {"status": "ok"})
    segs = [THINK, bad, ex, good, ok_ex, ANSWER]
    enc = tokenize_with_labels(aligned, PROMPT, segs, eos=False)
    trained, masked = split_text(aligned, enc)
    assert trained == R(THINK, good, ANSWER)
    assert masked == PROMPT + R(bad, ex, ok_ex)
    assert "</code>\n<executor>" in masked  # the failed block's trailing newline went with it


def test_code_status_fallbacks(aligned):
    """No status on the code: the executor's status decides; neither: not run, masked."""
    code = Segment("code", "print(3*4)")
    segs_ok = [THINK, code, Segment("executor", "12", {"status": "ok"}), ANSWER]
    segs_err = [THINK, code, Segment("executor", "boom", {"status": "error"}), ANSWER]
    segs_none = [THINK, code, Segment("executor", "12"), ANSWER]
    segs_open = [THINK, Segment("code", "print(3*", {"open": True})]
    assert code_status(segs_ok, 1) == "ok" and code_status(segs_err, 1) == "error"
    assert code_status(segs_none, 1) == "not_run" and code_status(segs_open, 1) == "not_run"
    assert split_text(aligned, tokenize_with_labels(aligned, PROMPT, segs_ok, eos=False))[0] == R(THINK, code, ANSWER)
    assert split_text(aligned, tokenize_with_labels(aligned, PROMPT, segs_err, eos=False))[0] == R(THINK, ANSWER)
    assert split_text(aligned, tokenize_with_labels(aligned, PROMPT, segs_none, eos=False))[0] == R(THINK, ANSWER)
    assert split_text(aligned, tokenize_with_labels(aligned, PROMPT, segs_open, eos=False))[0] == R(THINK)
    # the code's own status wins over the executor's
    segs_own = [THINK, Segment("code", "x", {"status": "error"}), Segment("executor", "", {"status": "ok"}), ANSWER]
    assert code_status(segs_own, 1) == "error"


def test_mask_until_first_transition(aligned):
    y1 = [Segment("think", "Text arithmetic: 17*23 = 381."), Segment("code", "print(17*23)", {"status": "ok"}),
          Segment("executor", "391", {"status": "ok"})]
    t1 = Segment("transition", F.CODE_TO_TEXT)
    t2 = Segment("transition", F.VERIFY_WITH_TEXT)
    code2 = Segment("code", "print(17*23)", {"status": "ok"})
    ex2 = Segment("executor", "391", {"status": "ok"})
    tail = [Segment("think", "17*23 = 391."), t2, code2, ex2, Segment("answer", "The answer is \\boxed{391}")]
    segs = [*y1, t1, *tail]
    masked_enc = tokenize_with_labels(aligned, PROMPT, segs, mask_until_first_transition=True, eos=False)
    trained, masked = split_text(aligned, masked_enc)
    assert trained == R(t1, tail[0], t2, code2, tail[-1])  # executor after the transition still masked
    assert masked == PROMPT + R(*y1) + R(ex2)
    plain = tokenize_with_labels(aligned, PROMPT, segs, mask_until_first_transition=False, eos=False)
    assert split_text(aligned, plain)[0] == R(y1[0], y1[1], t1, tail[0], t2, code2, tail[-1])
    # no transition: the flag has no effect
    no_t = [THINK, ANSWER]
    assert (tokenize_with_labels(aligned, PROMPT, no_t, mask_until_first_transition=True)["labels"]
            == tokenize_with_labels(aligned, PROMPT, no_t)["labels"])


def test_dicts_truncation_and_errors(aligned):
    segs = [THINK, Segment("code", "print(1)", {"status": "ok"}), Segment("executor", "1", {"status": "ok"}), ANSWER]
    a = tokenize_with_labels(aligned, PROMPT, segs)
    b = tokenize_with_labels(aligned, PROMPT, [s.to_dict() for s in segs])
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    cut = tokenize_with_labels(aligned, PROMPT, segs, max_length=len(a["input_ids"]) - 5)
    assert cut["truncated"] and cut["input_ids"] == a["input_ids"][:-5] and cut["labels"] == a["labels"][:-5]
    assert not a["truncated"]
    with pytest.raises(ValueError, match="segment 1"):
        tokenize_with_labels(aligned, PROMPT, [THINK.to_dict(), {"kind": "bogus", "text": "x"}])

    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast"):
        tokenize_with_labels(Slow(), PROMPT, segs)


# --- property: decoded trained tokens == the text that should be learned -------------------------
block_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                     max_size=30)
status = st.sampled_from(["ok", "error", "timeout", "killed", "not_run", None])
meta = st.builds(lambda s: {} if s is None else {"status": s}, status)
segment = st.one_of(
    st.builds(Segment, st.sampled_from(["think", "answer"]), block_text),
    st.builds(Segment, st.just("code"), block_text, meta),
    st.builds(Segment, st.just("executor"), block_text, meta),
    st.builds(Segment, st.just("transition"), st.sampled_from(sorted(F.KNOWN_TRANSITIONS))),
    st.builds(Segment, st.just("notice"), st.just(F.CALL_CAP_NOTICE)),
    st.builds(Segment, st.just("text"), st.sampled_from(["Let me think.", "Hmm, 12 again"])),
)


def expected_learned(segs: list[Segment], flag: bool) -> tuple[str, str]:
    """The rules, written out per segment (independent of masking.trained_char_spans)."""
    first_t = next((i for i, s in enumerate(segs) if s.kind == "transition"), None)
    learned, env = "", ""
    for i, s in enumerate(segs):
        st_ = s.meta.get("status")
        if s.kind == "code" and st_ is None and i + 1 < len(segs) and segs[i + 1].kind == "executor":
            st_ = segs[i + 1].meta.get("status")
        ok = (s.kind not in ("executor", "notice") and (s.kind != "code" or st_ == "ok")
              and not (flag and first_t is not None and i < first_t))
        if ok:
            learned += F.render_segment(s)
        else:
            env += F.render_segment(s)
    return learned, env


@settings(max_examples=200, deadline=None)
@given(st.lists(segment, max_size=10), st.booleans())
def test_property_trained_tokens_decode_to_learned_text(aligned, segs, flag):
    enc = tokenize_with_labels(aligned, PROMPT, segs, mask_until_first_transition=flag)
    learned, env = expected_learned(segs, flag)
    trained, masked = split_text(aligned, enc)
    assert trained == learned + EOS
    assert masked == PROMPT + env
    assert "".join(enc["text"][s:e] for s, e in enc["trained_spans"]) == learned


# --- the straddle rule ------------------------------------------------------------------------------
def test_straddling_tokens_are_trained(aligned):
    """Tokens that mix environment/masked and trained characters are trained (documented rule);
    a token wholly inside a masked part stays masked."""
    straddlers = ["</executor>\n<think>", "</code>\n<executor>", "</think>\nWait,"]
    tok = _bpe(CORPUS, [*straddlers, "12\n"], split_words=True)
    y1 = [Segment("think", "First try."), Segment("code", "print(3*4)", {"status": "ok"}),
          Segment("executor", "12", {"status": "ok"}), Segment("think", "Then")]
    segs = [*y1, Segment("transition", F.CODE_TO_TEXT), ANSWER]
    for flag in (False, True):
        enc = tokenize_with_labels(tok, PROMPT, segs, mask_until_first_transition=flag, eos=False, return_offsets=True)
        pieces = {enc["text"][s:e]: lab != IGNORE_INDEX for (s, e), lab in zip(enc["offsets"], enc["labels"], strict=True)}
        assert pieces["</think>\nWait,"] is True  # masked y1 tail + trained transition
        assert pieces["12\n"] is False  # wholly inside the executor
        if not flag:
            assert pieces["</code>\n<executor>"] is True  # trained code + masked executor
            assert pieces["</executor>\n<think>"] is True  # masked executor + trained think
        else:  # everything before the transition is masked: no trained character in these
            assert pieces["</code>\n<executor>"] is False and pieces["</executor>\n<think>"] is False


@settings(max_examples=100, deadline=None)
@given(st.lists(segment, max_size=8), st.booleans())
def test_property_straddle_rule_on_merging_tokenizer(merging, segs, flag):
    enc = tokenize_with_labels(merging, PROMPT, segs, mask_until_first_transition=flag, eos=False, return_offsets=True)
    learned_chars = set()
    for s, e in trained_char_spans(PROMPT, segs, mask_until_first_transition=flag):
        learned_chars.update(range(s, e))
    covered = set()
    for (s, e), lab in zip(enc["offsets"], enc["labels"], strict=True):
        chars = set(range(s, max(e, s + 1)))
        assert (lab != IGNORE_INDEX) == bool(chars & learned_chars), (s, e, enc["text"][s:e])
        if lab != IGNORE_INDEX:
            covered |= chars
    assert learned_chars <= covered


def test_merging_tokenizer_really_straddles(merging):
    segs = _realistic()[0][0]
    enc = tokenize_with_labels(merging, PROMPT, segs, eos=False, return_offsets=True)
    spans = trained_char_spans(PROMPT, segs)
    bounds = {b for s, e in spans for b in (s, e)}
    assert any(s < b < e for s, e in enc["offsets"] for b in bounds), "test tokenizer should cross boundaries"


# --- agreement with the official rule ------------------------------------------------------------
def official_labels(tok, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """The official executor rule restated for project-format text (the official dataloader itself is
    compared on official-format text in tests/test_official_masks.py): a token is masked when, with it
    appended, the text holds more ``<executor>`` than the text before it holds ``</executor>``.
    Prompt tokens are masked by count."""
    ids = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    labels = list(ids)
    for i in range(len(ids)):
        before, after = decode(tok, ids[:i]), decode(tok, ids[: i + 1])
        if i < n_prompt or after.count("<executor>") > before.count("</executor>"):
            labels[i] = IGNORE_INDEX
    return ids, labels


def _realistic() -> list[tuple[list[Segment], str]]:
    ok = {"status": "ok"}
    return [
        ([Segment("think", "We need 4064569^4513230 mod 1039*4283. Direct computation is heavy; use Python."),
          Segment("code", "print(pow(4064569, 4513230, 1039*4283))", ok), Segment("executor", "3293631", ok),
          Segment("think", "The executor returned 3293631."), Segment("answer", "The answer is \\boxed{3293631}")], "pow"),
        ([Segment("think", "Count the subsets of {1..10} with no two consecutive elements."),
          Segment("code", "from itertools import combinations\nn=0\nfor k in range(11):\n    for c in combinations(range(1,11),k):\n"
                          "        n += all(b-a>1 for a,b in zip(c,c[1:]))\nprint(n)", ok),
          Segment("executor", "144", ok), Segment("think", "That is F(12) = 144, as expected."),
          Segment("code", "print(sum(1 for _ in range(144)))", ok), Segment("executor", "144", ok),
          Segment("answer", "The answer is \\boxed{144}")], "two calls"),
        ([Segment("think", "Sum of the digits of 2^100."), Segment("code", "print(sum(map(int, str(2**100))))", ok),
          Segment("executor", "115", ok), Segment("transition", F.VERIFY_WITH_TEXT),
          Segment("think", "2^100 = 1267650600228229401496703205376; its digits sum to 115."),
          Segment("answer", "The answer is \\boxed{115}")], "verify"),
    ]


@pytest.fixture(scope="module")
def tiny_tok():
    """The tiny student's own tokenizer recipe (tags are single added tokens)."""
    from dualdistill.training.tiny_model import train_tokenizer as tiny_train

    return tiny_train(CORPUS + ["".join(F.render(segs) for segs, _ in _realistic())], 600)


@pytest.mark.parametrize("tok_name,expected", [("qwen_like", {"a"}), ("tiny_tok", {"c"}), ("merging", None)])
def test_agrees_with_official_rule_except_boundary_tokens(request, tok_name, expected):
    """Same labels as the official rule on realistic trajectories (all code ran, no transition
    mask) except at an executor block's boundary tokens. The official rule masks from the token
    that completes ``<executor>`` to the token that completes ``</executor>``; ours masks the
    characters of the rendered segment ``<executor>\n…\n</executor>\n``. So they differ only on:

    (a) tokens of the opening tag before the one completing it (the official off-by-one: it trains
        them, ours masks them);
    (c) the newline after ``</executor>`` when it is a token of its own (the environment wrote it:
        ours masks it, the official rule trains it);
    (b) a token straddling trained text and the executor block (tokenizers that merge across tags):
        ours trains it (any trained character), the official rule masks it."""
    tok = request.getfixturevalue(tok_name)
    seen = set()
    for segs, _name in _realistic():
        ids, labels = official_labels(tok, PROMPT, F.render(segs))
        enc = tokenize_with_labels(tok, PROMPT, segs, eos=False, return_offsets=True)
        assert enc["input_ids"] == ids
        text = enc["text"]
        ex_spans = [(len(PROMPT) + a, len(PROMPT) + b)
                    for (a, b, _, _), sg in zip(F.segment_spans(segs), segs, strict=True) if sg.kind == "executor"]
        for i, (ours, theirs) in enumerate(zip(enc["labels"], labels, strict=True)):
            if ours == theirs:
                continue
            s, e = enc["offsets"][i]
            if ours != IGNORE_INDEX:
                assert any(s < a < e or s < b < e for a, b in ex_spans), ("b", text[s:e])
                seen.add("b")
            elif any(a <= s and e < a + len("<executor>") for a, _ in ex_spans):
                seen.add("a")
            else:
                assert (s, e) in {(b - 1, b) for _, b in ex_spans}, ("c", text[s:e])
                seen.add("c")
    if expected is not None:
        assert seen == expected


# --- views -----------------------------------------------------------------------------------------
def test_mask_views(qwen_like):
    segs = [THINK, Segment("code", "print(1/0)", {"status": "error"}), Segment("executor", "Boom & <bad>", {"status": "error"}), ANSWER]
    ex = {"key": "k", "prompt": PROMPT, "segments": [s.to_dict() for s in segs], "mask_until_first_transition": False}
    pieces = mask_pieces(qwen_like, ex, show_prompt=True)
    assert "".join(t for t, _ in pieces) == PROMPT + F.render(segs) + EOS
    enc = tokenize_with_labels(qwen_like, PROMPT, segs)
    assert [tr for _, tr in pieces] == [lab != IGNORE_INDEX for lab in enc["labels"]]
    short = mask_pieces(qwen_like, ex)
    assert short[0] == (f"[prompt: {len(enc['input_ids']) - len(short) + 1} tokens]", False)
    html_out = mask_view_html(qwen_like, ex)
    body = html_out[html_out.index("<pre"):]
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == "".join(t for t, _ in short).replace("\n", "↵\n")
    assert "&amp;" in body and "&lt;" in body and f"{enc['num_trained']} trained" in html_out
    ansi = mask_view_ansi(qwen_like, ex)
    plain = ansi
    for code in ("\x1b[30;42m", "\x1b[30;102m", "\x1b[37;100m", "\x1b[30;47m", "\x1b[0m"):
        plain = plain.replace(code, "")
    assert plain == "".join(t for t, _ in short).replace("\n", "↵\n")
    assert "\x1b[30;42m" in ansi and "\x1b[37;100m" in ansi
    spans = mask_pieces(None, ex)  # no tokenizer yet: character spans
    assert spans[0] == (f"[prompt: {len(PROMPT)} characters]", False)
    assert "".join(t for t, tr in spans if tr) == R(THINK, ANSWER)
    with pytest.raises(KeyError, match="segments"):
        mask_view_html(qwen_like, {"key": "bad", "prompt": PROMPT})
