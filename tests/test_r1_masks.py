"""Loss masks on the real student tokenizer (DeepSeek-R1-Distill-Qwen's BPE, dualdistill.training.r1_tokenizer):
the mask view around executor blocks, token by token, in the project's and the official format.

In this vocabulary ``<code>``/``<executor>``/``<answer>`` are several tokens and ``>`` merges with the
newline after it; the views below pin where the mask starts and ends on those tokens. Also run under
vLLM's transformers (tests/test_vllm_venv.py)."""

from __future__ import annotations

import pytest

from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.formats.formatting import Segment
from dualdistill.report.mask_views import mask_pieces, mask_view_ansi
from dualdistill.training import r1_tokenizer as r1
from dualdistill.training.masking import IGNORE_INDEX, tokenize_with_labels

PROMPT = F.build_prompt("Compute 7^85 mod 613.", code=True, style="official")
T, M = True, False  # trained, masked


@pytest.fixture(scope="module")
def tok():
    return r1.make_r1_tokenizer()


def _example(segments: list[Segment], **kw) -> dict:
    return {"key": "k", "prompt": PROMPT, "segments": [s.to_dict() for s in segments],
            "mask_until_first_transition": False, **kw}


def _around(pieces: list[tuple[str, bool]], start: str, n: int) -> list[tuple[str, bool]]:
    """``n`` pieces from the first piece equal to ``start`` on."""
    i = [t for t, _ in pieces].index(start)
    return pieces[i:i + n]


def test_executor_and_failed_code_on_real_bpe(tok) -> None:
    segs = [Segment("think", "Too big by hand."), Segment("code", "print(pow(7, 85, 613))", {"status": "ok"}),
            Segment("executor", "456", {"status": "ok"}), Segment("code", "print(1/0)", {"status": "error"}),
            Segment("executor", "ZeroDivisionError: division by zero", {"status": "error"}),
            Segment("answer", F.answer_text("456"))]
    ex = _example(segs)
    pieces = mask_pieces(tok, ex)
    assert pieces[0] == ("[prompt: 202 tokens]", M)
    # ok code: trained to its closing tag; its last line merges ")\n" and "</" "code" ">\n" follow
    assert _around(pieces, "(pow", 18) == [
        ("(pow", T), ("(", T), ("7", T), (",", T), (" ", T), ("8", T), ("5", T), (",", T), (" ", T), ("6", T),
        ("1", T), ("3", T), ("))\n", T), ("</", T), ("code", T), (">\n", T), ("<", M), ("executor", M)]
    # the executor block (tags, contents, its newline), the failed block and its executor: all masked;
    # the answer's first token "<" is the first one trained again
    i = [t for t, _ in pieces].index("executor")
    assert pieces[i - 1:i + 37] == [
        ("<", M), ("executor", M), (">\n", M), ("4", M), ("5", M), ("6", M), ("\n", M), ("</", M), ("executor", M),
        (">\n", M), ("<", M), ("code", M), (">\n", M), ("print", M), ("(", M), ("1", M), ("/", M), ("0", M),
        (")\n", M), ("</", M), ("code", M), (">\n", M), ("<", M), ("executor", M), (">\n", M), ("Zero", M),
        ("Division", M), ("Error", M), (":", M), (" division", M), (" by", M), (" zero", M), ("\n", M), ("</", M),
        ("executor", M), (">\n", M), ("<", T), ("answer", T)]
    assert pieces[-1] == (F.EOS_TOKEN, T)
    # the view is the labels: one piece per token, trained iff its label is not ignored
    enc = tokenize_with_labels(tok, PROMPT, segs)
    full = mask_pieces(tok, ex, show_prompt=True)
    assert [tr for _, tr in full] == [lab != IGNORE_INDEX for lab in enc["labels"]]
    assert "".join(t for t, _ in full) == PROMPT + F.render(segs) + F.EOS_TOKEN
    # on this BPE every executor boundary is a token boundary: the trained tokens are exactly the
    # characters the rules train (no token mixes executor and student text)
    trained = tok.decode([i for i, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE_INDEX],
                         skip_special_tokens=False)
    assert trained == F.render([segs[0], segs[1], segs[5]]) + F.EOS_TOKEN


def test_official_format_switch_after_failed_code_on_real_bpe(tok) -> None:
    """A case-01 example in the official layout (code→text opens a new think block): no loss before the
    transition, so the whole first attempt — its code and the executor's output — is masked."""
    segs = official.place_transitions([
        Segment("think", "I compute it with code."), Segment("code", "print(pow(7, 85, 613) // 0)", {"status": "error"}),
        Segment("executor", "ZeroDivisionError: integer division or modulo by zero", {"status": "error"}),
        Segment("transition", F.CODE_TO_TEXT), Segment("think", "By Fermat, 7^85 mod 613 = 456."),
        Segment("answer", F.answer_text("456"))])
    ex = _example(segs, mask_until_first_transition=True, text_format="official")
    pieces = mask_pieces(tok, ex)
    assert all(not tr for _, tr in pieces[:pieces.index(("<think>", T))])
    assert _around(pieces, "Zero", 20) == [
        ("Zero", M), ("Division", M), ("Error", M), (":", M), (" integer", M), (" division", M), (" or", M),
        (" modulo", M), (" by", M), (" zero", M), ("\n", M), ("</", M), ("executor", M), (">\n", M),
        ("<think>", T), ("\n", T), ("Wait", T), (",", T), (" the", T), (" code", T)]
    assert pieces[-4:] == [("</", T), ("answer", T), (">", T), (F.EOS_TOKEN, T)]  # official: ends at </answer>
    ansi = mask_view_ansi(tok, ex)
    grey, green = ("\x1b[37;100m", "\x1b[30;47m"), ("\x1b[30;42m", "\x1b[30;102m")
    assert any(f"{c}executor\x1b[0m" in ansi for c in grey) and any(f"{c}Wait\x1b[0m" in ansi for c in green)
    assert not any(f"{c}executor\x1b[0m" in ansi for c in green)
