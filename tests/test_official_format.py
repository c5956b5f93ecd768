"""Writing the official format: transitions placed as the official data has them, character spans of
the official rendering, the layout rule, and ``accepted`` against the official ``check_format`` run
as an oracle (tests/official_ref.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.formats.formatting import FormatError, Segment
from dualdistill.grading import official_score
from tests import official_ref as ref


def check_format(text: str) -> bool:
    return bool(ref.load("math_utils/format_checking.py").check_format(text))


THINK = Segment("think", "Try by hand: 17 * 23 is long.")
CODE = Segment("code", "print(17 * 23)", {"status": "ok"})
EXEC = Segment("executor", "391", {"status": "ok"})
ANSWER = Segment("answer", "The answer is \\boxed{391}")


def _t(sentence: str, key: str) -> Segment:
    return Segment("transition", sentence, {"transition": key})


def test_code_to_text_opens_a_think_block_with_the_reasoning_after_it() -> None:
    segs = [THINK, CODE, EXEC, _t(F.CODE_TO_TEXT, "fix:code_to_text"), Segment("think", "17*23 = 391."), ANSWER]
    placed = official.place_transitions(segs)
    text = official.render(placed)
    assert f"\n</executor>\n<think>\n{F.CODE_TO_TEXT}\n\n17*23 = 391.\n</think>\n<answer>" in text
    assert text.count("<think>") == 2 and check_format(text) and official.accepted(text)
    assert placed[3].meta["block"] == placed[4].meta["block"] == 3  # the fourth block of the trajectory
    official.validate(placed)
    assert [s.meta for s in segs[:3]] == [{}, {"status": "ok"}, {"status": "ok"}]  # input untouched
    back = official.parse(text)
    assert [(s.kind, s.text) for s in back] == [(s.kind, s.text) for s in placed]


def test_text_to_code_ends_the_first_attempts_think_block() -> None:
    segs = [THINK, _t(F.TEXT_TO_CODE, "fix:text_to_code"), Segment("think", "Code it."), CODE, EXEC, ANSWER]
    text = official.render(official.place_transitions(segs))
    assert text.startswith(f"<think>\n{THINK.text}\n\n{F.TEXT_TO_CODE}\n</think>\n<think>\nCode it.\n</think>\n<code>")
    assert check_format(text)
    # no think block before it: the sentence gets one of its own
    alone = official.render(official.place_transitions([CODE, EXEC, _t(F.TEXT_TO_CODE, "fix:text_to_code"), ANSWER]))
    assert f"</executor>\n<think>\n{F.TEXT_TO_CODE}\n</think>\n<answer>" in alone and check_format(alone)


def test_direction_from_meta_else_from_the_sentence() -> None:
    custom = Segment("transition", "Let me switch to code now.", {"transition": "fix:text_to_code"})
    text = official.render(official.place_transitions([THINK, custom, CODE, EXEC, ANSWER]))
    assert f"{THINK.text}\n\nLet me switch to code now.\n</think>" in text
    bare = Segment("transition", F.VERIFY_WITH_TEXT)  # no meta: the sentence says code→text
    text = official.render(official.place_transitions([THINK, CODE, EXEC, bare, Segment("think", "Check."), ANSWER]))
    assert f"<think>\n{F.VERIFY_WITH_TEXT}\n\nCheck.\n</think>" in text


def test_segment_spans_cover_the_official_rendering() -> None:
    segs = official.place_transitions([THINK, CODE, EXEC, _t(F.CODE_TO_TEXT, "fix:code_to_text"),
                                       Segment("think", "R1."), ANSWER])
    text = official.render(segs)
    spans = official.segment_spans(segs)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    for seg, (start, end, ts, te) in zip(segs, spans, strict=True):
        assert text[ts:te] == seg.text and start <= ts <= te <= end
    assert text[spans[3][0]:spans[3][2]] == "<think>\n"  # the opening transition owns its <think>
    parsed = official.parse("  <think>\nx\n</think>\n\n<answer>\n\\boxed{1}\n</answer>\n")
    assert [text_of for text_of in ("x", "\\boxed{1}")] == [
        official.render(parsed)[ts:te] for _, _, ts, te in official.segment_spans(parsed)]


def test_validate_rejects_what_check_format_refuses() -> None:
    good = official.place_transitions([THINK, _t(F.TEXT_TO_CODE, "fix:text_to_code"), CODE, EXEC, ANSWER])
    official.validate(good)
    late = Segment("think", "So 391.")
    cases = {
        "a line outside any block": [THINK, Segment("text", "stray line"), CODE, EXEC, ANSWER],
        "a bare transition": [THINK, CODE, EXEC, Segment("transition", F.CODE_TO_TEXT), late, ANSWER],
        "a notice": [THINK, CODE, EXEC, Segment("notice", F.CALL_CAP_NOTICE), late, ANSWER],
    }
    for why, segs in cases.items():
        with pytest.raises(FormatError):
            official.validate(segs)
        assert not check_format(official.render(segs)), why
    # stricter than check_format, which lets a line through when only the answer follows it
    just_before_answer = [THINK, CODE, EXEC, Segment("transition", F.CODE_TO_TEXT), ANSWER]
    assert not official.is_valid(just_before_answer) and check_format(official.render(just_before_answer))
    with pytest.raises(FormatError, match="unclosed"):
        official.validate([THINK, Segment("code", "print(1)", {"open": True})], require_answer=False)
    with pytest.raises(FormatError, match="answer"):
        official.validate([THINK, CODE, EXEC])
    official.validate([THINK, CODE, EXEC], require_answer=False)


tag_soup = st.lists(st.sampled_from([
    "<think>", "</think>", "<code>", "</code>", "<executor>", "</executor>", "<answer>", "</answer>",
    "\n", " ", "x", "\\boxed{2}", F.CODE_TO_TEXT,
]), max_size=12).map("".join)


@settings(max_examples=600, deadline=None)
@given(tag_soup)
def test_accepted_is_the_official_format_check(text: str) -> None:
    assert official.accepted(text) is check_format(text)


def test_accepted_on_chosen_texts() -> None:
    texts = ["", "no tags", "<think>\na\n</think>\ntrailing words", "<think>\na\n</think>\nwords <code>x</code>",
             "<think>a<think>b</think>", "<answer>\n\\boxed{1}\n</answer>\n<think>\nlate\n</think>",
             "<think>a</think><answer>x</answer><answer>y</answer>", "<code>x</code></executor>",
             "<think>a</think>\n<answer>x", " \n<executor>\nout\n</executor>\n<answer>\n1\n</answer> tail"]
    verdicts = [official.accepted(t) for t in texts]
    assert verdicts == [check_format(t) for t in texts]
    assert True in verdicts and False in verdicts


def test_verdict_is_score_or_none() -> None:
    assert official_score.verdict("<answer>\\boxed{12}</answer>", "2") is True  # the official substring rule
    assert official_score.verdict("<answer>\\boxed{7}</answer>", "8") is False
    assert official_score.verdict(None, "8") is None  # type: ignore[arg-type]


def test_verdict_off_the_main_thread_has_a_deadline() -> None:
    """Records are graded in the tool loop's threads, where math-verify has no time limit: an answer
    like 10^(10^12) (a step count copied from an insight problem) kept stage 05 busy for good. There the
    math-verify step runs in a helper process with math-verify's own limits and a hard deadline."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    huge = "<think>\nso\n</think>\n<answer>\nThe answer is \\boxed{10^{10^{12}}}\n</answer>"
    cases = [(huge, "3"), ("<answer>\\boxed{1/2}</answer>", "0.5"), ("<answer>\\boxed{7}</answer>", "8"),
             ("<answer>\\boxed{12}</answer>", "2")]
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        got = [pool.submit(official_score.verdict, r, g, timeout=10).result() for r, g in cases]
    assert got[0] in (False, None) and time.monotonic() - t0 < 30
    assert got[1:] == [official_score.score(r, g) for r, g in cases[1:]] == [True, False, True]  # as in the main thread


def test_the_official_executor_doubles_its_replay(tmp_path, monkeypatch) -> None:
    """What README and METHOD §7 say of the official executor, measured on it: each call runs in a fresh
    ``python``, after the code kept from earlier successful calls — which doubles with every call."""
    import os
    import sys

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.chdir(tmp_path)
    code_block = ref.utils().code_block
    previous, outputs = "", []
    for k in range(1, 5):
        out, err, previous = code_block(f"hits = globals().get('hits', 0) + 1\nprint('call {k}', hits)",
                                        previous_code=previous)
        assert not err
        outputs.append(out.strip())
        assert previous.count("print('call 1'") == 2 ** (k - 1)  # the kept code doubles
    assert outputs == ["call 1 1", "call 2 2", "call 3 4", "call 4 8"]  # call k executes 2^(k-1) blocks
