"""The trajectory format: render/parse are exact inverses; validation; answer extraction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualdistill.formats import formatting as F
from dualdistill.formats.formatting import FormatError, Segment

# block text: any text without tags (may contain newlines, braces, unicode)
block_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=40,
)
bare_text = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "Zs"), blacklist_characters="\u2028\u2029"),
                    min_size=1, max_size=30).filter(lambda s: s.strip() == s and s.strip())
segment = st.one_of(
    st.builds(Segment, st.sampled_from(F.BLOCK_KINDS), block_text),
    st.builds(Segment, st.just("transition"), st.sampled_from(sorted(F.KNOWN_TRANSITIONS))),
    st.builds(Segment, st.just("notice"), st.just(F.CALL_CAP_NOTICE)),
    st.builds(Segment, st.just("text"), bare_text.filter(lambda s: s not in F.KNOWN_TRANSITIONS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(segment, max_size=8))
def test_parse_inverts_render(segments):
    text = F.render(segments)
    assert F.parse(text, strict=True) == segments
    assert F.parse(text) == segments
    assert F.render(F.parse(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(segment, max_size=8))
def test_segment_spans_cover_render(segments):
    text = F.render(segments)
    spans = F.segment_spans(segments)
    assert (spans[-1][1] if spans else 0) == len(text)
    for seg, (start, end, ts, te) in zip(segments, spans, strict=True):
        assert text[ts:te] == seg.text
        assert F.render_segment(seg) == text[start:end]


EXAMPLE = (
    "<think>\nI compute it.\n</think>\n<code>\nprint(pow(4064569, 4513230, 1039*4283))\n</code>\n"
    "<executor>\n3293631\n</executor>\n<think>\nSo it is 3293631.\n</think>\n"
    "<answer>\nThe answer is \\boxed{3293631}\n</answer>\n"
)


def test_design_example_round_trip_and_validates():
    segs = F.parse(EXAMPLE, strict=True)
    assert [s.kind for s in segs] == ["think", "code", "executor", "think", "answer"]
    F.validate(segs)
    assert F.render(segs) == EXAMPLE
    assert F.extract_final_answer(EXAMPLE) == "3293631"


@pytest.mark.parametrize(
    "segments, message",
    [
        ([Segment("think", "x")], "exactly one answer"),
        ([Segment("answer", "\\boxed{1}"), Segment("think", "x")], "last segment"),
        ([Segment("answer", "\\boxed{1}"), Segment("answer", "\\boxed{2}")], "exactly one answer"),
        ([Segment("think", "a <code> b"), Segment("answer", "\\boxed{1}")], "nesting"),
        ([Segment("answer", "42")], "boxed"),
        ([Segment("text", "two\nlines"), Segment("answer", "\\boxed{1}")], "one non-empty line"),
    ],
)
def test_validate_rejects(segments, message):
    with pytest.raises(FormatError, match=message):
        F.validate(segments)


@pytest.mark.parametrize(
    "text",
    [
        "<think>\na <code>\nb\n</code>\n</think>\n",  # nesting
        "<think>\nnever closed",
        "</think>\n",
        "<think>\nx\n</think>no newline",
    ],
)
def test_strict_parse_rejects(text):
    with pytest.raises(FormatError):
        F.parse(text, strict=True)


def test_lenient_parse_of_model_output():
    segs = F.parse("<think>abc</think><answer>\\boxed{3}</answer>")
    assert [(s.kind, s.text) for s in segs] == [("think", "abc"), ("answer", "\\boxed{3}")]
    truncated = F.parse("<think>\nabc\n</think>\n<code>\nprint(1")
    assert truncated[-1].kind == "code" and truncated[-1].meta["open"]
    runs_into = F.parse("<think>\nabc <code>\nprint(1)\n</code>\n")
    assert [s.kind for s in runs_into] == ["think", "code"] and runs_into[0].meta["open"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (EXAMPLE, "3293631"),
        ("<think>\n\\boxed{5}\n</think>\n<answer>\n\\boxed{7}\n</answer>\n", "7"),
        ("<think>\n\\boxed{5}\n</think>\nso \\boxed{8}", "8"),  # after the last </think>
        ("<think>\n\\boxed{5}\n</think>\nno answer here", None),  # thinking does not count
        ("<answer>\n\\boxed{\\frac{1}{2}} or \\boxed{x^{2}}\n</answer>", "x^{2}"),  # last, nested braces
        ("plain \\boxed{3} then \\boxed{4}", "4"),  # no tags: last boxed anywhere
        ("<think>\nx\n</think>\n<code>\nprint(1)\n</code>\n<executor>\n\\boxed{9}\n</executor>\n", None),
        ("<answer>\nno box\n</answer>", None),
        ("", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert F.extract_final_answer(text) == expected


def test_strip_final_answer_keeps_everything_before():
    segs = F.parse(EXAMPLE)
    stripped = F.strip_final_answer(segs)
    assert [s.kind for s in stripped] == ["think", "code", "executor", "think"]
    assert F.extract_final_answer(F.render(stripped)) is None


def test_prompt_builder():
    with_code = F.build_prompt("What is 2+2?", code=True)
    without = F.build_prompt("What is 2+2?", code=False)
    assert with_code.endswith(F.USER_TAG + "What is 2+2?" + F.ASSISTANT_TAG)
    assert "<code>" in with_code and "<code>" not in without
    assert "\\boxed{}" in without
    second = F.build_second_teacher_problem("P?", "<think>\ntry\n</think>\n")
    assert second.startswith("P?") and "try" in second


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown segment kind"):
        Segment("thought", "x")


def test_prompt_styles():
    r1 = F.build_prompt("P?", code=True)
    compact = F.build_prompt("P?", code=True, style="compact")
    assert r1 == F.build_prompt("P?", code=True, style="r1")
    assert len(compact) < len(r1) / 2 and "<code>" in compact and "<executor>" in compact
    assert compact.endswith(F.USER_TAG + "P?" + F.ASSISTANT_TAG)
    with pytest.raises(ValueError, match="unknown prompt style"):
        F.build_prompt("P?", code=True, style="chatml")
