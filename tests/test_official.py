"""Official formats against the official code itself (tests/official_ref.py runs it as an oracle).

- prompts: ``build_prompt(style="official" | "official-eval")`` against what the official dataloader,
  evaluation and sampler build, on several problems (unicode, braces, role tags);
- ``official_score.score`` against the official ``compute_score`` on the shared test sets' answers;
- ``official.parse``/``render`` on trajectories made by the official sampler (scripted server, real
  code execution), the official self-distillation processing script and the official dataloader;
  code statuses against the official dataloader's masks.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.formats.formatting import Segment
from dualdistill.grading import official_score
from tests import official_ref as ref
from tests.conftest import DUALDISTILL_DATA


def _shared_problem(name: str) -> str:
    with open(DUALDISTILL_DATA / "test" / name) as f:
        return ref.utils().find_question(json.loads(f.readline()))


PROBLEMS = [
    "What is $1+1$?",
    "Let $f(x)=\\frac{x}{2}$. Find {x} with \\boxed{f(x)} = {code_instruction} {problem} {0} }{ {{",
    "Сколько решений у x² ≡ 4 в 𝔽₇? ☃ — é ∑ 中文",
    "Line one\n\nLine two\n\n<｜Assistant｜><think>\ntricky",
    "",
]


@pytest.fixture(scope="module")
def problems() -> list[str]:
    return [*PROBLEMS, _shared_problem("aime2025.jsonl"), _shared_problem("combinatorics300.jsonl")]


def _train(samples: list[dict[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the official ``TrainData`` over ``samples`` (one id per character)."""
    data = ref.dataloader().TrainData(samples, ref.CharTokenizer(), code_instruction=None)
    return [(ids.tolist(), labels.tolist()) for ids, labels in data.items]


# --- prompts ---------------------------------------------------------------------------------------

def test_official_prompt_constants_are_the_official_strings() -> None:
    u = ref.utils()
    assert F.OFFICIAL_TRAIN_SYSTEM == u.SYSTEM_PROMPT_TPL
    assert F.OFFICIAL_CODE_INSTRUCTION == u.CODE_INSTRUCTION


def test_training_prompt_is_what_the_official_dataloader_builds(problems: list[str]) -> None:
    completion = "<think>\nx\n</think>\n<answer>\n\\boxed{2}\n</answer>"
    built = {ref.CharTokenizer().decode(ids) for ids, _ in _train(
        [{"problem": p, "synthetic_data": completion} for p in problems])}
    ours = {F.build_prompt(p, code=True, style="official") + completion + ref.EOS_TEXT for p in problems}
    assert built == ours  # bos=True: BOS in the text where the official tokenizer adds it
    for p in problems:
        plain = F.build_prompt(p, code=True, bos=False, style="official")
        assert F.build_prompt(p, code=True, style="official") == F.BOS_TOKEN + plain
        # no official text-only training prompt: code=False leaves the instruction slot empty
        assert F.build_prompt(p, code=False, bos=False, style="official") == plain.replace(
            F.OFFICIAL_CODE_INSTRUCTION, "", 1)


class _RecordingTokenizer(ref.CharTokenizer):
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = super().encode(text, add_special_tokens)
        self.calls.append(list(ids))
        return ids


class _SilentLLM:
    """A vLLM ``LLM`` stand-in that generates nothing: the official ``inference`` returns its prompt."""

    def __init__(self) -> None:
        self.tokenizer = _RecordingTokenizer()

    def get_tokenizer(self) -> _RecordingTokenizer:
        return self.tokenizer

    def generate(self, **_: Any) -> list[Any]:
        return [SimpleNamespace(outputs=[SimpleNamespace(text="", token_ids=[])])]


@pytest.mark.parametrize("code", [True, False])
def test_eval_prompt_is_what_official_evaluation_and_sampler_build(problems: list[str], code: bool) -> None:
    ev = ref.evaluate()
    for p in problems:
        ours = F.build_prompt(p, code=code, bos=False, style="official-eval")
        llm = _SilentLLM()
        assert ev.inference(llm, p, code_mode=code, max_tokens=8) == ours  # in-process vLLM path
        assert ref.CharTokenizer().decode(llm.tokenizer.calls[0]) == F.build_prompt(p, code=code, style="official-eval")
        generated = "x\n</think>\n<answer>\n\\boxed{1}\n</answer>"
        ref.SERVER.load({p: [[generated]]})
        out = ev.server_inference(model_base_url="scripted", model_name="m", tokenizer_path="t", input=p,
                                  code_mode=code)
        assert ref.SERVER.prompts == [ours]  # server path (evaluation and self-distillation sampling)
        assert out == ours + generated
        assert out.split("<｜Assistant｜>")[-1] == F.prompt_prefill("official-eval") + generated


def test_generation_prefix_and_prefill() -> None:
    for style in F.ALL_PROMPT_STYLES:
        prompt = F.build_prompt("P", code=True, style=style)
        assert F.prompt_prefill(style) + F.generation_prefix(style) == F.GENERATION_PREFIX
        assert prompt.endswith(F.ASSISTANT_TAG + F.prompt_prefill(style))
    assert F.generation_prefix("official-eval") == "" and F.generation_prefix("official") == F.GENERATION_PREFIX
    with pytest.raises(ValueError, match="unknown prompt style"):
        F.build_prompt("P", code=True, style="chatml")
    assert set(F.PROMPT_STYLES) == {"r1", "compact"}  # the tiny tokenizer's corpus is unchanged


# --- score -----------------------------------------------------------------------------------------

def _golds() -> list[Any]:
    """Gold answers of the four shared test sets, read by the official ``find_answer`` (amc's are floats)."""
    golds: list[Any] = []
    for name, step in (("aime2025", 1), ("amc", 1), ("combinatorics300", 10), ("math500_test", 10)):
        with open(DUALDISTILL_DATA / "test" / f"{name}.jsonl") as f:
            rows = [json.loads(line) for line in f]
        golds += [ref.utils().find_answer(r) for r in rows[::step]]
    return golds


def _spellings(gold: Any) -> tuple[str, str]:
    """(the gold as a model would write it, a wrong answer)."""
    text = str(gold)
    try:
        value = float(text)
    except ValueError:
        return text, "\\pi^{3}+q"
    clean = str(int(value)) if value.is_integer() else text
    return clean, str(int(value) + 1) if value.is_integer() else "-17/3"


TEMPLATES = [
    "<think>\nWork.\n</think>\n<answer>\nThe answer is \\boxed{{{a}}}\n</answer>",
    "<think>\nWork.\n</think>\n<answer>\nThe answer is \\boxed{{{w}}}\n</answer>",
    "<think>\nCompute.\n</think>\n<code>\nprint(x)\n</code>\n<executor>\n{a}\n</executor>\n",
    "<think>\nCompute.\n</think>\n<code>\nprint(x)\n</code>\n<executor>\n{w}\n</executor>\n"
    "<think>\nok\n</think>\n<answer>\n\\boxed{{{a}}}\n</answer>",
    "<think>\nHmm.\n</think>\nSo the final answer is $\\boxed{{{a}}}$.",
    "<think>\nHmm.\n</think>\n<answer>\n\\boxed{{{a}\\text{{ cm}}}} or $\\boxed{{{a}^\\circ}}$\n</answer>",
    "<think>\nSign.\n</think>\n<answer>\n\\boxed{{-{a}}}\n</answer>",
    "<think>\nx\n</think>\n<code>\nprint(1)\n</code>\n<executor>\n{w}\n</executor>\n<answer>\n\\boxed{{{a}}}",
    "<answer>\n\\boxed{{{w}}}\n</answer>\n<think>\nNo.\n</think>\n<answer>\n\\boxed{{{a}}}\n</answer>",
    "<think>\nI am not sure.\n</think>\n",
    "The answer is \\boxed{{{g}}}.",
    "<think>\nit is {a}\n</think>\n<executor>\n{a}\n</executor>",
    "<think>\nbig\n</think>\n<answer>\n\\boxed{{{t}}}\n</answer>",
    "<think>\nwrong then right\n</think>\n<code>\nprint(2)\n</code>\n<executor>\n{w}\n</executor>\n"
    "<think>\nIt is $\\boxed{{{a}}}$.\n</think>\n",
]

# substring traps and spelling edge cases of the official scorer
TRAPS: list[tuple[str, Any]] = [
    ("<answer>\\boxed{12}</answer>", "2"),
    ("<answer>\\boxed{-4}</answer>", "4"),
    ("<answer>\\boxed{10}</answer>", "1"),
    ("<answer>\\boxed{0.5}</answer>", "5"),
    ("<answer>\\boxed{7}</answer>", ""),
    ("<answer>\\boxed{142}</answer>", 142.0),
    ("<answer>\\boxed{142}</answer>", "142.0"),
    ("<answer>\\boxed{1,000}</answer>", "1000"),
    ("<answer>\\boxed{1000}</answer>", "1,000"),
    ("<answer>\\boxed{1,000}</answer>", "1e3"),
    ("<answer>\\boxed{1,000}</answer>", "1_000"),
    ("<answer>\\boxed{inf}</answer>", "infinity"),
    ("<answer>\\boxed{0}</answer>", "-0"),
    ("<answer>\\boxed{7}</answer>", " 7"),
    ("<answer>\\boxed{42}</answer>", "٤٢"),
    ("<answer>\\boxed{12,345,678,901,234,567,168}</answer>", "12345678901234567890"),
    ("<answer>\\boxed{\\frac{1}{2}}</answer>", "0.5"),
    ("<answer>\\boxed{3}</answer>", "\\boxed{3}"),
    ("<think>\nx\n</think>\n<code>\nprint(13)\n</code>\n<executor>\n13\n</executor>\n", "3"),
    ("<think>\nx\n</think>\n<code>\nprint(1)\n</code>\n<executor>\n1\n</executor>\n<code>\nprint(2)\n</code>\n"
     "<executor>\n2\n</executor>\n", "2"),
    ("<answer>foo<answer>\\boxed{2}</answer>", "2"),
    ("</answer> text <answer>\\boxed{2}", "2"),
    ("<code>x</code><executor>1</executor>\n<answer>\\boxed{2}</answer> and \\boxed{5}", "5"),
    ("<code>x</code><executor>1</executor>\n<answer>\\boxed{2}</answer> and \\boxed{5}", "2"),
    ("<think>\n\\boxed{9}\n</think>\n<think>\nthen 8\n</think>\nfinal 7", "9"),
    ("<think>\n\\boxed{9}\n</think>\n<think>\nthen 8\n</think>\nfinal 7", "7"),
    ("<executor>\n5\n</executor>\n</think>\nso \\boxed{5}", "5"),
    ("no tags at all, \\boxed{-3}", "-3"),
    ("<answer>\\boxed{nan}</answer>", "nan"),
]


def _score_cases() -> list[tuple[str, Any]]:
    cases = list(TRAPS)
    for i, gold in enumerate(_golds()):
        a, w = _spellings(gold)
        try:
            thousands = format(int(float(a)), ",")
        except ValueError:
            thousands = a
        for k in (i % len(TEMPLATES), (i * 5 + 3) % len(TEMPLATES)):
            cases.append((TEMPLATES[k].format(a=a, w=w, g=gold, t=thousands), gold))
    return cases


def test_score_agrees_with_official_compute_score() -> None:
    compute_score = ref.utils().compute_score
    cases = _score_cases()
    verdicts, mismatches = [], []
    for response, gold in cases:
        theirs = compute_score(response, gold) == 1.0
        ours = official_score.score(response, gold)
        verdicts.append(theirs)
        if ours is not theirs:
            mismatches.append((response, gold, theirs))
    assert not mismatches, mismatches[:5]
    assert len(cases) >= 200
    assert sum(verdicts) >= 60 and len(verdicts) - sum(verdicts) >= 60


def test_score_in_a_thread_matches_the_main_thread() -> None:
    """math-verify's time limits need the main thread; elsewhere ``score`` runs it without them."""
    cases = _score_cases()[::10]
    main = [official_score.score(r, g) for r, g in cases]
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda c: official_score.score(*c), cases)) == main


# --- parse / render ---------------------------------------------------------------------------------

tag_soup = st.lists(st.sampled_from([
    "<think>", "</think>", "<code>", "</code>", "<executor>", "</executor>", "<answer>", "</answer>",
    "\n", " ", "\n\n", "x = 1", "\\boxed{2}", "Wait", "é∑{}", *sorted(F.KNOWN_TRANSITIONS),
    F.OFFICIAL_CALL_CAP_NOTICE, "Traceback (most recent call last)", F.OFFICIAL_TIMEOUT_OUTPUT,
]), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(tag_soup)
def test_render_inverts_parse_on_any_text(text: str) -> None:
    assert official.render(official.parse(text)) == text


def _canonical(segments: list[Segment]) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in segments]


def test_canonical_render_of_built_segments() -> None:
    built = [Segment("think", "Long by hand.", {"block": 0}), Segment("transition", F.TEXT_TO_CODE, {"block": 0}),
             Segment("code", "print(6*7)"), Segment("executor", "42"),
             Segment("transition", F.CODE_TO_TEXT, {"block": 9}), Segment("think", "R1 text {x}", {"block": 9}),
             Segment("answer", "\\boxed{42}")]
    text = official.render(built)
    back = official.parse(text)
    assert _canonical(back) == _canonical(built) and official.render(back) == text
    assert back[0].meta["block"] == back[1].meta["block"] != back[4].meta["block"] == back[5].meta["block"]
    assert text.count("<think>") == 2 and f"\n<think>\n{F.CODE_TO_TEXT}\n\nR1 text" in text


def _code_spans(segments: list[Segment]) -> list[tuple[int, int, Segment]]:
    spans, pos = [], 0
    for seg in segments:
        start = pos + len(seg.meta["pre"])
        if seg.kind == "code":
            spans.append((start, start + len(seg.text), seg))
        pos = start + len(seg.text) + len(seg.meta["post"])
    return spans


def _check_statuses_against_dataloader(completion: str) -> int:
    """Code statuses of ``official.parse`` == the official dataloader's code masks (trained iff ok);
    only blocks after the first transition, before which the dataloader masks everything."""
    (ids, labels), = _train([{"problem": "P", "synthetic_data": completion}])
    full = ref.CharTokenizer().decode(ids[:-1])
    prompt = F.build_prompt("P", code=True, style="official")
    assert full.startswith(prompt)
    text = full[len(prompt):]
    assert official.render(official.parse(text)) == text
    segments = official.parse(text)
    offset = len(ids) - 1 - len(text)  # index of the completion's first character
    first = next((i for i, s in enumerate(segments) if s.kind == "transition"), None)
    after = len(official.render(segments[: first + 1])) if first is not None else 0
    checked = 0
    for start, end, seg in _code_spans(segments):
        if start < after or end == start:
            continue
        masked = {labels[offset + i] == -100 for i in range(start, end)}
        assert masked == {seg.meta["status"] != "ok"}, (seg.text, seg.meta)
        checked += 1
    return checked


def test_code_status_follows_the_official_error_rule() -> None:
    cases = [
        "<think>\na\n</think>\n<code>\nx\n</code>\n<think>\nb\n</think>\n<code>\ny\n</code>\n"
        "<executor>\nTraceback (most recent call last):\n  NameError\n</executor>\n<answer>\n\\boxed{1}\n</answer>",
        "<think>\na\n</think>\n<code>\nx\n</code>\n<executor>\nNameError: name 'q' is not defined\n</executor>\n"
        "<code>\ny\n</code>\n<executor>\n  File \"f.py\", line 1\nSyntaxError: invalid syntax\n</executor>\n"
        "<code>\nz\n</code>\n<executor>\nError: Code execution timed out.\n</executor>\n<code>\nw\n</code>\n"
        "<executor>\n5\n</executor>\n<answer>\n\\boxed{5}\n</answer>",
        "<think>\na\n</think>\n<code>\nx\n</code>\n<executor>\n1\n</executor>\n<code>\ny\n</code>\n",
    ]
    seen = set()
    for text in cases:
        assert _check_statuses_against_dataloader(text) >= 1
        seen |= {s.meta["status"] for s in official.parse(text) if s.kind == "code"}
    assert seen == {"ok", "error", "timeout", "not_run"}


# --- the official self-distillation pipeline on scripted generations ----------------------------------

P1, P2 = "What is $6 \\times 7$? Give {the} product.", "Compute $\\sum_{k=1}^{10} k^2$ over $\\{1,\\dots,10\\}$ — ünï ∑ ☃."
P3, P4 = "How many nonempty subsets does $\\{a,b,c\\}$ have?", "What is $2^{10}$?"
ANSWERS = {P1: "42", P2: "385", P3: "7", P4: "1024"}
THINK = "\n<think>\n{}\n</think>\n<answer>\n\\boxed{{{}}}\n</answer>"
SCRIPTS = {  # generations after the prompt's "<think>\n": pieces end at "</code>" (the official stop)
    P1: [["I will compute it.\n</think>\n<code>\nprint(6*7)\n</code>", THINK.format("It says 42.", 42)],
         ["Code.\n</think>\n<code>\nprint(6*y)\n</code>", THINK.format("It failed; guess.", 41)],
         ["6 times 7 is 42.\n</think>\n<answer>\n\\boxed{42}\n</answer>"],
         ["Fenced.\n</think>\n<code>\n```python\nimport sys\nsys.stderr.write('careful\\n')\nprint(6*7)\n```\n</code>",
          THINK.format("ok", 42)]],
    P2: [[f"Squares by hand are long. {F.TEXT_TO_CODE}\n</think>\n<code>\nprint(sum(k*k for k in range(1, 11)))\n"
          "</code>", THINK.format("So 385.", 385)],
         ["Brute force.\n</think>\n<code>\nwhile True:\n    pass\n</code>", THINK.format("Too slow.", 380)],
         ["Code:\n</think>\n<code>\nprint(sum(k*k for k in range(1, 11))\n</code>", THINK.format("Oops.", 384)],
         ["The sum is 386.\n<answer>\n\\boxed{386}\n</answer>"]],
    P3: [["Enumerate.\n</think>\n<code>\nprint(0)\n</code>",
          *[f"\n<think>\nStep {i}.\n</think>\n<code>\nprint({i})\n</code>" for i in range(1, 11)],
          "\nThe answer is \\boxed{7}\n</answer>"],
         ["Code.\n</think>\n<code>\nprint(2**3)\n</code>", f"\n<think>\n{F.CODE_TO_TEXT}\n\nThere are 8.\n</think>\n"
          "<answer>\n\\boxed{8}\n</answer>"],
         ["Let me count.\n</think>\n<code>\nprint(2**3 - 1)\n</code>", THINK.format("Seven.", 7)],
         ["Count.\n</think>\n<code>\nprint(2**3)\n</code>", THINK.format("Eight.", 8)]],
    P4: [["2^10 = 1024.\n</think>\n<answer>\n\\boxed{1,024}\n</answer>"], ["Guess.\n</think>\n<answer>\n\\boxed{1000}\n</answer>"],
         ["c\n</think>\n<code>\nprint(2**10)\n</code>", THINK.format("1024", 1024)],
         ["d\n</think>\n<code>\nprint(1 << 10)\n</code>", THINK.format("1024", 1024)]],
}
R1 = {  # DeepMath-style R1 solutions: thinking, "</think>", summary
    P1: "Okay, 6 times 7. Six sevens are 42.\n</think>\n\nThe product is $\\boxed{42}$.",
    P2: "<think>\nOkay — Σ k² = n(n+1)(2n+1)/6 = 10·11·21/6 = 385.\n</think>\n\n**Final Answer**\n\\boxed{385}",
    P3: "Okay, 2^3 subsets {…} minus the empty one: 7.</think>\\boxed{7}",
    P4: "Okay, 2^10 = 1024.\n</think>\n\n\\boxed{1024}",
}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Run the official sampler (scripted server, real execution), solution extraction and
    self-distillation processing in a scratch directory laid out as the official scripts expect."""
    root = tmp_path_factory.mktemp("official_pipeline")
    train = root / "dataset" / "train"
    (train / "self_distillation").mkdir(parents=True)
    with open(train / "whole_training_set.jsonl", "w") as f:
        for p, a in ANSWERS.items():
            f.write(json.dumps({"problem": p, "answer": a}) + "\n")
    ref.run_extract_training_solution(root, [{"question": p, **{f"r1_solution_{k}": R1[p] for k in (1, 2, 3)}}
                                             for p in ANSWERS])
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(os.path.realpath(sys.executable))  # the official executor runs "python"
    ref.SERVER.load(SCRIPTS)
    old_cwd = Path.cwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        os.chdir(root)
        try:
            ref.sampler().self_distillation_sampler(
                server_url="scripted", model_name="m", model_path="tok", data_path=str(train / "whole_training_set.jsonl"),
                num_samples=4, save_path=str(train / "self_distillation"), data_size=len(ANSWERS))
        finally:
            os.chdir(old_cwd)
    prompts = list(ref.SERVER.prompts)
    ref.run_script("script/data_script/processing_self_distillation_traj.py", root, "transformers")
    sd = train / "self_distillation"
    return {
        "prompts": [{"prompt": p} for p in prompts],
        "sampled": _read_jsonl(sd / "iteration_1_correct_replay_buffer.jsonl")
        + _read_jsonl(sd / "iteration_1_incorrect_replay_buffer.jsonl"),
        "verify": _read_jsonl(sd / "iteration_1_correct_replay_buffer_deduplicated.jsonl"),
        "corrected": _read_jsonl(sd / "iteration_1_incorrect_replay_buffer_revised_deduplicated_0.9.jsonl"),
        "solutions": _read_jsonl(train / "whole_training_set_with_solution.jsonl"),
    }


def test_sampler_prompts_are_official_eval(pipeline: dict[str, list[dict[str, Any]]]) -> None:
    prompts = [r["prompt"] for r in pipeline["prompts"]]
    assert len(prompts) == 16
    assert set(prompts) == {F.build_prompt(p, code=True, bos=False, style="official-eval") for p in ANSWERS}


def test_round_trip_on_official_sampler_outputs(pipeline: dict[str, list[dict[str, Any]]]) -> None:
    sampled = [r["synthetic_data"] for r in pipeline["sampled"]]
    assert len(sampled) == 16
    statuses, caps = set(), 0
    for text in sampled:
        segments = official.parse(text)
        assert official.render(segments) == text
        assert segments[0].kind == "think" and segments[0].meta["pre"].startswith(F.GENERATION_PREFIX)
        statuses |= {s.meta["status"] for s in segments if s.kind == "code"}
        caps += sum(1 for s in segments if s.meta.get("cap_notice"))
    assert statuses >= {"ok", "error", "timeout"} and caps == 1


def _check_composed(text: str, sentence: str) -> None:
    segments = official.parse(text)
    assert official.render(segments) == text
    j = next(i for i, s in enumerate(segments) if s.kind == "transition" and s.text == sentence
             and s.meta["pre"].startswith("<think>"))
    block = segments[j].meta["block"]
    assert j == 0 or segments[j - 1].meta.get("block") != block  # the transition opens its think block
    assert official.render(segments[:j]) == text[: text.index("<think>\n" + sentence)]
    assert segments[j + 1].kind == "think"  # the text teacher's solution (a new block if it reopens <think>)
    assert segments[j + 1].meta.get("block") == block or segments[j].meta.get("open")
    assert segments[-1].kind == "answer"


def test_round_trip_on_official_processing_outputs(pipeline: dict[str, list[dict[str, Any]]]) -> None:
    assert pipeline["verify"] and pipeline["corrected"]
    for row in pipeline["verify"]:
        _check_composed(row["synthetic_data"], F.VERIFY_WITH_TEXT)
    for row in pipeline["corrected"]:
        _check_composed(row["synthetic_data"], F.CODE_TO_TEXT)
    for row in pipeline["solutions"]:
        text = "<think>\n" + row["solution"]
        assert official.render(official.parse(text)) == text


def test_round_trip_and_statuses_on_official_dataloader_inputs(pipeline: dict[str, list[dict[str, Any]]]) -> None:
    rows = pipeline["sampled"] + pipeline["verify"] + pipeline["corrected"]
    checked = 0
    for row in rows:
        if ref.load("math_utils/format_checking.py").check_format(row["synthetic_data"]):
            checked += _check_statuses_against_dataloader(row["synthetic_data"])
    assert checked >= 10
