"""Self-distillation (Algorithm 1, steps 5–7): selection rules, resumable sampling, S1 → S2.

    .venv/bin/python -m pytest tests/test_self_distillation.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dualdistill.algorithm.selection import (
    cut_before_answer,
    gbar_by_problem,
    group_by_problem,
    parse_r1_solution,
    rules_for,
    select_examples,
    selection_counts,
    teacher_solutions_from_problems,
    teacher_solutions_from_records,
)
from dualdistill.artifacts.identity import samples_hash
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import JsonlStore
from dualdistill.config import DataSource, config_from_dict
from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment
from dualdistill.rollout.policy import Generation, Policy
from dualdistill.stages.self_distillation import sample_student

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALDISTILL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TRAIN_FILE = SHARED / "data" / "dualdistill" / "train" / "whole_training_set.jsonl"

VERIFY = formatting.DEFAULT_TRANSITIONS["verify:code_to_text"]
FIX = formatting.DEFAULT_TRANSITIONS["fix:code_to_text"]


# --- builders ------------------------------------------------------------------------------------
def student_segments(answer: str, *, tag: str = "", own_transition: bool = False, truncated: bool = False,
                     notice: bool = False) -> list[dict]:
    """A student trajectory: think, code, executor, (extras), think, answer."""
    segs = [
        Segment("think", f"Let me compute it with code {tag}."),
        Segment("code", f"print({answer!r})", {"status": "ok"}),
        Segment("executor", answer, {"status": "ok"}),
    ]
    if own_transition:
        segs += [Segment("transition", FIX), Segment("think", f"By hand the result is \\boxed{{{answer}}} {tag}.")]
    if notice:
        segs.append(Segment("notice", formatting.CALL_CAP_NOTICE))
    if truncated:
        segs.append(Segment("code", "while True:\n    pass", {"open": True, "status": "not_run"}))
    else:
        segs += [Segment("think", f"So the result is {answer}."),
                 Segment("answer", formatting.answer_text(answer))]
    return [s.to_dict() for s in segs]


def sample_record(pid: str, gold: str, sample: int, correct: bool, *, n_tokens: int = 100, **kw) -> dict:
    answer = gold if correct else f"{gold}9"
    return {
        "key": f"S1|{pid}|{sample}|h",
        "model": "S1", "benchmark": "train", "budget": 4096, "sample": sample, "status": "ok",
        "problem": {"id": pid, "problem": f"What is {gold}?", "answer": gold, "source": "t",
                    "subset": "computation", "family": "fam", "meta": {}},
        "trajectory": {"problem_id": pid, "role": "student", "prompt": "p", "n_tokens": n_tokens,
                       "segments": student_segments(answer, tag=f"s{sample}", **kw)},
        "correct": correct,
    }


def problem_with(pid: str, n_correct: int, k: int, gold: str = "42", **kw) -> list[dict]:
    """k samples, the first n_correct correct, so ḡ = n_correct / k."""
    return [sample_record(pid, gold, s, s < n_correct, n_tokens=100 + 10 * (k - s), **kw) for s in range(k)]


def text_solution(gold: str = "42") -> list[Segment]:
    return [Segment("think", f"Carefully by hand: the value is {gold}."),
            Segment("answer", formatting.answer_text(gold))]


def before_first_transition(segments: list[dict]) -> list[Segment]:
    segs = [Segment.from_dict(s) for s in segments]
    i = next(i for i, s in enumerate(segs) if s.kind == "transition")
    return segs[:i]


# --- the β1/β2 rule --------------------------------------------------------------------------------
# (ḡ, β1, β2, verify fires, correct fires)
RULE_TABLE = [
    (0.0, 0.0, 0.9, False, True),     # never solved: only a correction (ḡ = β1 = 0 is not > β1)
    (1.0, 0.0, 0.9, False, False),    # always solved: not eligible at all
    (0.25, 0.25, 0.9, False, True),   # ḡ exactly β1: no verification
    (0.5, 0.0, 0.5, True, False),     # ḡ exactly β2: no correction
    (0.5, 0.0, 0.9, True, True),      # both rules fire
    (0.75, 0.0, 0.5, True, False),    # above β2
    (0.5, 0.5, 0.5, False, False),    # β1 = β2 = ḡ: neither
    (0.25, 0.5, 0.5, False, True),    # β1 = β2, below
    (0.75, 0.5, 0.5, True, False),    # β1 = β2, above
    (0.9, 0.0, 0.9, True, False),     # 9/10 is exactly 0.9 in floating point: strict
    (0.75, 1.0, 1.0, False, True),    # β1 = 1 disables verification, β2 = 1 corrects every ḡ < 1
]


@pytest.mark.parametrize(("g", "beta1", "beta2", "verify", "correct"), RULE_TABLE)
def test_rules_and_counts_on_edge_values(g, beta1, beta2, verify, correct):
    expect = [r for r, on in (("verify", verify), ("correct", correct)) if on]
    assert rules_for(g, beta1, beta2) == expect
    counts = selection_counts([g], beta1, beta2)
    assert counts == {"problems": 1, "verify": int(verify), "correct": int(correct), "eligible": int(g < 1),
                      "solved": int(g == 1), "both": int(verify and correct), "examples": int(verify) + int(correct),
                      "problems_used": int(verify or correct)}


@pytest.mark.parametrize(("g", "beta1", "beta2", "verify", "correct"), RULE_TABLE)
def test_select_examples_on_edge_values(g, beta1, beta2, verify, correct):
    k = 10 if g == 0.9 else 4
    samples = {"p": problem_with("p", round(g * k), k)}
    assert gbar_by_problem(samples)["p"] == g
    examples, report = select_examples(samples, {"p": [text_solution()]}, beta1=beta1, beta2=beta2, pick="first")
    rules = sorted(e["rule"] for e in examples)
    assert rules == sorted(r for r, on in (("verify", verify), ("correct", correct)) if on)
    assert report["examples"] == {"verify": int(verify), "correct": int(correct)}
    assert report["verify"] == int(verify) and report["correct"] == int(correct)


def test_selection_counts_agree_with_selection_over_many_problems():
    samples = {f"p{n}": problem_with(f"p{n}", n, 8) for n in range(9)}  # ḡ = 0, 1/8, ..., 1
    sols = {pid: [text_solution()] for pid in samples}
    for beta1, beta2 in [(0.0, 0.9), (0.25, 0.5), (0.5, 0.5), (0.0, 1.0), (1.0, 0.0)]:
        examples, report = select_examples(samples, sols, beta1=beta1, beta2=beta2, pick="random", seed=3)
        counts = selection_counts(gbar_by_problem(samples), beta1, beta2)
        assert report["examples"] == {"verify": counts["verify"], "correct": counts["correct"]}
        assert counts["solved"] == 1 and counts["eligible"] == 8
        per = [(e["problem_id"], e["rule"]) for e in examples]
        assert len(per) == len(set(per)), "at most one example per rule per problem"
        assert len({e["key"] for e in examples}) == len(examples)
    # paper defaults: ḡ in (0, 1) gives both, ḡ = 0 only a correction, ḡ = 1 nothing
    examples, _ = select_examples(samples, sols, beta1=0.0, beta2=0.9, pick="first")
    by = {}
    for e in examples:
        by.setdefault(e["problem_id"], []).append(e["rule"])
    assert by["p0"] == ["correct"] and "p8" not in by
    assert sorted(by["p3"]) == ["correct", "verify"]


def test_paper_defaults_on_seven_eighths():
    samples = {"p": problem_with("p", 7, 8)}  # ḡ = 0.875 < 0.9 → both rules
    examples, _ = select_examples(samples, {"p": [text_solution()]}, beta1=0.0, beta2=0.9, pick="first")
    assert sorted(e["rule"] for e in examples) == ["correct", "verify"]


# --- the examples themselves -----------------------------------------------------------------------
def test_correction_cuts_the_wrong_answer_and_masks_the_attempt():
    samples = {"p": problem_with("p", 1, 4, gold="1234")}
    examples, _ = select_examples(samples, {"p": [text_solution("1234")]}, beta1=0.0, beta2=0.9, pick="first")
    ex = next(e for e in examples if e["rule"] == "correct")
    segs = [Segment.from_dict(s) for s in ex["segments"]]
    formatting.validate(segs)  # exactly one final answer, at the end
    before = before_first_transition(ex["segments"])
    assert formatting.extract_final_answer(formatting.render(before)) is None
    assert "12349" not in formatting.render(segs[-1:])  # the wrong answer is not the example's answer
    assert segs[len(before)].text == FIX
    assert formatting.extract_final_answer(formatting.render(segs)) == "1234"
    assert ex["mask_until_first_transition"] is True
    assert ex["source"] == "t2" and ex["student_sample"] == 1  # first incorrect sample
    assert ex["prompt"] == formatting.build_prompt("What is 1234?", code=True)
    assert ex["gbar"] == 0.25


def test_verification_drops_the_students_answer_and_keeps_one_final_answer():
    samples = {"p": problem_with("p", 2, 4, gold="77")}
    examples, _ = select_examples(samples, {"p": [text_solution("77")]}, beta1=0.0, beta2=0.9, pick="first")
    ex = next(e for e in examples if e["rule"] == "verify")
    segs = [Segment.from_dict(s) for s in ex["segments"]]
    formatting.validate(segs)
    before = before_first_transition(ex["segments"])
    assert [s.kind for s in before] == ["think", "code", "executor", "think"]
    assert segs[len(before)].text == VERIFY
    assert ex["mask_until_first_transition"] is False  # wrong_first: a correct attempt is learned
    assert ex["student_sample"] == 0


def test_truncated_attempts_lose_open_blocks_notices_and_boxed_text():
    segs = [Segment.from_dict(s) for s in student_segments("5", notice=True, truncated=True)]
    cut = cut_before_answer(segs)
    assert [s.kind for s in cut] == ["think", "code", "executor"]
    # an attempt whose own text after its last think carries a \boxed{} loses that tail
    tail = [Segment("think", "hmm"), Segment("text", "so \\boxed{3}"), Segment("answer", "\\boxed{3}")]
    assert cut_before_answer(tail) == [Segment("think", "hmm")]
    assert formatting.extract_final_answer(formatting.render(cut_before_answer(tail))) is None


def test_students_own_transition_does_not_end_the_masked_part():
    samples = {"p": problem_with("p", 0, 2, own_transition=True)}
    examples, _ = select_examples(samples, {"p": [text_solution()]}, beta1=0.0, beta2=0.9, pick="first")
    (ex,) = examples
    segs = [Segment.from_dict(s) for s in ex["segments"]]
    trans = [i for i, s in enumerate(segs) if s.kind == "transition"]
    assert len(trans) == 1 and segs[trans[0]].text == FIX  # the appended one is the first transition
    assert any(s.kind == "text" and s.text == FIX and s.meta.get("was") == "transition" for s in segs)
    assert formatting.render(segs).count(FIX) == 2  # the rendering is unchanged
    assert formatting.extract_final_answer(formatting.render(segs[: trans[0]])) is None
    formatting.validate(segs)


@pytest.mark.parametrize(("mode", "verify_mask", "correct_mask"),
                         [("wrong_first", False, True), ("always", True, True), ("never", False, False)])
def test_mask_modes(mode, verify_mask, correct_mask):
    samples = {"p": problem_with("p", 2, 4)}
    examples, _ = select_examples(samples, {"p": [text_solution()]}, beta1=0.0, beta2=0.9, pick="first",
                                  mask_before_transition=mode)
    masks = {e["rule"]: e["mask_until_first_transition"] for e in examples}
    assert masks == {"verify": verify_mask, "correct": correct_mask}


def test_custom_transitions_are_used():
    trans = dict(formatting.DEFAULT_TRANSITIONS, **{"fix:code_to_text": formatting.CODE_TO_TEXT_MAY})
    examples, _ = select_examples({"p": problem_with("p", 0, 2)}, {"p": [text_solution()]},
                                  beta1=0.0, beta2=0.9, pick="first", transitions=trans)
    assert any(s["kind"] == "transition" and s["text"] == formatting.CODE_TO_TEXT_MAY for s in examples[0]["segments"])


def test_pick_modes():
    k = 8
    # samples 0..3 correct, 4..7 wrong; n_tokens decrease with the sample index
    samples = {f"p{i}": problem_with(f"p{i}", 4, k) for i in range(12)}
    sols = {pid: [[Segment("think", "a much longer hand computation " * 3), Segment("answer", "\\boxed{42}")],
                  text_solution()] for pid in samples}

    def chosen(pick, seed=0):
        ex, _ = select_examples(samples, sols, beta1=0.0, beta2=0.9, pick=pick, seed=seed)
        return {(e["problem_id"], e["rule"]): (e["student_sample"], e["teacher_solution"]) for e in ex}

    first = chosen("first")
    assert set(first.values()) == {(0, 0), (4, 0)}
    shortest = chosen("shortest")
    assert {v for (pid, r), v in shortest.items() if r == "verify"} == {(3, 1)}
    assert {v for (pid, r), v in shortest.items() if r == "correct"} == {(7, 1)}
    rnd = chosen("random", seed=1)
    assert rnd == chosen("random", seed=1), "random is seeded"
    assert rnd != chosen("random", seed=2)
    assert all((s < 4) == (r == "verify") for (_, r), (s, _) in rnd.items())
    assert len({s for (_, r), (s, _) in rnd.items() if r == "verify"}) > 1, "random varies across problems"
    with pytest.raises(ValueError, match="pick"):
        select_examples(samples, sols, beta1=0.0, beta2=0.9, pick="longest")


def test_problems_without_teacher_solution_are_reported():
    samples = {"a": problem_with("a", 1, 4), "b": problem_with("b", 0, 4), "c": problem_with("c", 4, 4)}
    bad = [Segment("think", "no answer here")]  # invalid solution: counted, not used
    examples, report = select_examples(samples, {"a": [text_solution()], "b": [bad]}, beta1=0.0, beta2=0.9)
    assert {e["problem_id"] for e in examples} == {"a"}
    assert report["no_teacher_solution"] == ["b"] and report["n_no_teacher_solution"] == 1
    assert report["invalid_teacher_solution"] == 1
    assert report["solved"] == 1  # c needs no solution: ḡ = 1 is never selected


def test_failed_samples_do_not_count_toward_gbar():
    recs = problem_with("p", 1, 2)
    recs.append({**sample_record("p", "42", 2, False), "status": "failed"})
    assert gbar_by_problem({"p": recs})["p"] == 0.5
    assert gbar_by_problem({"q": [{**sample_record("q", "1", 0, False), "status": "failed"}]}) == {}


# --- text-teacher solutions ------------------------------------------------------------------------
def test_teacher_solutions_from_records_keeps_correct_text_teacher_only():
    def rec(pid, teacher, correct, role="first"):
        traj = {"problem_id": pid, "role": teacher, "prompt": "p", "segments": [s.to_dict() for s in text_solution()]}
        return {"key": f"{pid}|{role}|{teacher}", "problem": {"id": pid}, "role": role, "teacher": teacher,
                "status": "ok", "trajectory": traj, "correct": correct}

    recs = [rec("a", "text", True), rec("a", "agent", True), rec("b", "text", False), rec("c", "text", True, "second"),
            rec("c", "text", True)]
    sols = teacher_solutions_from_records(recs)
    assert sorted(sols) == ["a", "c"] and len(sols["c"]) == 2
    assert sols["a"][0] == text_solution()
    with pytest.raises(ValueError, match="record 0"):
        teacher_solutions_from_records([{"teacher": "text", "correct": True, "problem": {"id": "x"}}])


R1_TABLE = [
    # (recorded trace, expected segment kinds, expected final answer)
    ("Okay, 2+2 is 4.\n</think>\n\nSo the sum is \\boxed{4}.", ["think", "answer"], "4"),
    ("<think>\nOkay, 2+2 is 4.\n</think>\n**Final Answer**\n\\boxed{4}", ["think", "answer"], "4"),
    ("Okay, it is \\boxed{4} without a closing tag", ["think", "answer"], "4"),
    ("Reasoning only, no answer.</think> nothing boxed", None, None),
    ("", None, None),
    ("uses a <code> tag inside</think>\\boxed{1}", None, None),  # would break the format
]


@pytest.mark.parametrize(("text", "kinds", "answer"), R1_TABLE)
def test_parse_r1_solution(text, kinds, answer):
    segs = parse_r1_solution(text)
    if kinds is None:
        assert segs is None
        return
    assert [s.kind for s in segs] == kinds
    assert formatting.extract_final_answer(formatting.render(segs)) == answer


def test_teacher_solutions_from_problems_checks_answers():
    from dualdistill.formats.problem import Problem

    p = Problem("x/0", "2+2?", "4", "x", meta={"r1_solution_1": "2+2=4</think>\\boxed{4}",
                                               "r1_solution_2": "2+2=5</think>\\boxed{5}"})
    assert len(teacher_solutions_from_problems([p])["x/0"]) == 1
    assert len(teacher_solutions_from_problems([p], check=False)["x/0"]) == 2


# --- sampling (step 5): resumable -----------------------------------------------------------------
class FakeStudent(Policy):
    """Answers without code: sample s of problem n is correct iff s < n % (K + 1). Optionally
    raises on its ``fail_on``-th call (an interrupted run) or returns errors for some samples."""

    name = "fake-student"

    def __init__(self, k: int, *, fail_on: int | None = None, error_samples: frozenset = frozenset(),
                 wrong: str | None = None) -> None:
        self.k, self.fail_on, self.error_samples = k, fail_on, error_samples
        self.wrong = wrong  # the wrong answer (default: the gold with a 0 appended)
        self.calls = 0
        self.seen: list[tuple[str, int]] = []

    def generate(self, requests):
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise RuntimeError("interrupted")
        out = []
        for r in requests:
            p, s = r.context["problem"], r.context["sample"]
            self.seen.append((p.id, s))
            if (p.id, s) in self.error_samples:
                out.append(Generation("", "error", 0, error="server went away"))
                continue
            n = int(p.id.rsplit("/", 1)[1])
            ans = p.answer if s < n % (self.k + 1) else self.wrong or f"{p.answer}0"
            text = f"Sample {s}.\n</think>\n<answer>\nThe answer is \\boxed{{{ans}}}\n"
            out.append(Generation(text, "stop", n_tokens=12, stop="</answer>"))
        return out

    def count_tokens(self, text):
        return len(text.split())


def make_cfg(tmp_path: Path, n: int = 6, k: int = 4, **sd) -> object:
    if not TRAIN_FILE.is_file():
        raise FileNotFoundError(f"shared data not found at {TRAIN_FILE}; set DUALDISTILL_SHARED")
    return config_from_dict({
        "run_name": "sd", "output_dir": str(tmp_path / "outputs"), "device": "cpu",
        "data": {"train": [DataSource(kind="dualdistill", path=str(TRAIN_FILE), limit=n).model_dump()]},
        "sandbox": {"workers": 1, "timeout": 3.0},
        "self_distill": {"k": k, "budget": 64, **sd},
    })


def test_sampling_resumes_only_missing_samples(tmp_path):
    k, n = 4, 6
    cfg = make_cfg(tmp_path, n=n, k=k, max_in_flight=5)
    interrupted = FakeStudent(k, fail_on=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        sample_student(cfg, policy=interrupted, progress=False)
    store = JsonlStore(cfg.run_dir / "self_distill" / "samples.jsonl")
    first = store.read()
    # every trajectory that ended before the interruption is on disk, graded; at most 5 were in flight
    assert len(first) == len(interrupted.seen) and 0 < len(first) < n * k
    assert {(r["problem"]["id"], r["sample"]) for r in first} == set(interrupted.seen)
    assert all(isinstance(r["correct"], bool) and r["grade_status"] for r in first)

    again = FakeStudent(k)
    records = sample_student(cfg, policy=again, progress=False)
    all_pairs = {(f"whole_training_set/{i}", s) for i in range(n) for s in range(k)}
    done_first = {(r["problem"]["id"], r["sample"]) for r in first}
    assert set(again.seen) == all_pairs - done_first and len(again.seen) == n * k - len(first)
    keys = [r["key"] for r in store.read()]
    assert len(keys) == len(set(keys)) == n * k  # no duplicates
    assert len(records) == n * k
    assert all(r["status"] == "ok" and r["model"] == "S1" for r in records)
    assert all(r["key"].endswith(samples_hash(cfg)) for r in records)

    # the per-problem summary is recomputed from all records, not only this run's
    rows = {r["problem_id"]: r for r in json_lines(RunPaths.of(cfg).sd_problem_summary)}
    for i in range(n):
        row = rows[f"whole_training_set/{i}"]
        assert row["n"] == k and row["n_correct"] == min(i % (k + 1), k)
        assert row["gbar"] == min(i % (k + 1), k) / k

    idle = FakeStudent(k, fail_on=1)  # a complete run generates nothing
    assert len(sample_student(cfg, policy=idle, progress=False)) == n * k and idle.calls == 0

    # raising K reuses the cached samples and draws only the new indices
    cfg8 = make_cfg(tmp_path, n=n, k=6)
    more = FakeStudent(6)
    assert len(sample_student(cfg8, policy=more, progress=False)) == n * 6
    assert sorted({s for _, s in more.seen}) == [4, 5] and len(more.seen) == 2 * n


def test_sampling_retries_failed_samples(tmp_path):
    cfg = make_cfg(tmp_path, n=2, k=2)
    bad = frozenset({("whole_training_set/1", 0)})
    recs = sample_student(cfg, policy=FakeStudent(2, error_samples=bad), progress=False)
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["correct"] is False
    retry = FakeStudent(2)
    recs = sample_student(cfg, policy=retry, progress=False)
    assert retry.seen == [("whole_training_set/1", 0)]
    assert all(r["status"] == "ok" for r in recs) and len(recs) == 4
    grouped = group_by_problem(recs)
    assert gbar_by_problem(grouped)["whole_training_set/1"] == 0.5  # 1 % 3 = 1 of 2 correct


class CodingStudent(FakeStudent):
    """Writes one code block, then boxes what the executor printed (the tool loop runs it)."""

    def generate(self, requests):
        self.calls += 1
        out = []
        for r in requests:
            done = r.context["completion"]
            if "<executor>" not in done:
                p = r.context["problem"]
                out.append(Generation(f"Use code.\n</think>\n<code>\nprint({p.answer} + {r.context['sample']})\n",
                                      "stop", 8, stop="</code>"))
            else:
                printed = done.split("<executor>\n")[-1].split("\n</executor>")[0]
                out.append(Generation(f"<think>\nDone.\n</think>\n<answer>\n\\boxed{{{printed}}}\n", "stop", 8,
                                      stop="</answer>"))
        return out


def test_sampling_runs_code_in_the_sandbox(tmp_path):
    cfg = make_cfg(tmp_path, n=2, k=2)
    recs = sample_student(cfg, policy=CodingStudent(2), progress=False)  # 4 trajectories, 1 sandbox
    assert len(recs) == 4
    for r in recs:
        segs = [Segment.from_dict(s) for s in r["trajectory"]["segments"]]
        executor = next(s for s in segs if s.kind == "executor")
        assert executor.meta["status"] == "ok" and r["trajectory"]["n_code_calls"] == 1
        gold = int(r["problem"]["answer"])
        assert executor.text == str(gold + r["sample"])  # really executed
        assert r["correct"] is (r["sample"] == 0) and r["final_answer"] == executor.text


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the whole stage on a tiny model (steps 5–7) ------------------------------------------------------
TOY = [  # (problem, answer, recorded text-teacher trace in DeepMath's r1_solution format)
    ("Compute 12 + 30.", "42", "12 + 30 = 42.\n</think>\nSo the answer is \\boxed{42}."),
    ("Compute 7 * 6 + 1.", "43", "7 * 6 = 42, plus 1 is 43.\n</think>\n\\boxed{43}"),
    ("Compute 2 ** 5.", "32", "2^5 = 32.</think>The answer is \\boxed{32}."),
]


def tiny_cfg(tmp_path: Path, **sd) -> dict:
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a, "r1_solution_1": r}) + "\n"
                            for i, (p, a, r) in enumerate(TOY)))
    sft = {"method": "full", "learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 2,
           "gradient_checkpointing": False, "bf16": False, "logging_steps": 1, "save_steps": 100}
    return {
        "run_name": "tiny", "output_dir": str(tmp_path / "outputs"), "device": "cpu",
        "data": {"train": [{"kind": "jsonl", "path": str(data), "name": "toy", "field_map": {"id": "id"}}]},
        "student": {"model": "tiny", "backend": "hf", "dtype": "float32"},
        "sandbox": {"workers": 1, "timeout": 3.0},
        "self_distill": {"k": 2, "budget": 24, "max_code_calls": 1, "sft": sft, **sd},
    }


@pytest.mark.slow
def test_whole_stage_on_a_tiny_model_produces_s2(tmp_path):
    """Real HF sampling from an untrained tiny S1 (sampling only), then the whole stage: its
    truncated attempts leave nothing to correct, so S2 is a copy of S1 with a warning; with a
    scripted student (another sampling seed, so fresh samples) T2 has both rules and S1 is trained
    on it into S2; a rerun is a no-op."""
    from dualdistill.config import TinyModelConfig
    from dualdistill.stages.self_distillation import COPY_MARKER, run, self_distill, showcase, status_lines
    from dualdistill.training.tiny_model import build_tiny
    from dualdistill.world import tokenizer_corpus

    raw = tiny_cfg(tmp_path)
    cfg = config_from_dict(raw)
    paths = RunPaths.of(cfg)
    small = TinyModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=128, max_position_embeddings=1024, vocab_size=600)
    build_tiny(small, paths.model("S1"), tokenizer_corpus(per_family=2))  # an untrained S1: it babbles

    sampled = self_distill(cfg, until="sample", progress=False)
    assert sampled["n_samples"] == 6 and sampled["n_failed_samples"] == 0
    assert sampled["gbar_hist"] == {"0.000": 3}  # a random model never answers right
    assert {k: sampled["counts"][k] for k in ("verify", "correct", "eligible", "solved")} == \
        {"verify": 0, "correct": 3, "eligible": 3, "solved": 0}
    assert not paths.t2.exists() and not paths.model("S2").exists()
    n_lines = len(paths.sd_samples.read_text().splitlines())

    empty = run(cfg, progress=False)  # samples reused, nothing usable to correct
    assert len(paths.sd_samples.read_text().splitlines()) == n_lines
    assert empty["n_examples"] == 0 and sorted(empty["no_student_sample"]["correct"]) == ["toy/0", "toy/1", "toy/2"]
    assert any("T2 is empty" in w for w in empty["warnings"])
    assert (paths.model("S2") / COPY_MARKER).is_file() and (paths.model("S2") / "config.json").is_file()
    said = status_lines(cfg, empty)  # what notebook 04 shows: what was done now and what was reused
    assert empty["samples_drawn"] == 0 and said[0].startswith("step 5: 6 samples of S1") and "0 drawn now, 6 reused" in said[0]
    assert said[-1].startswith("step 7: T2 is empty, S2 is a copy of S1")

    cfg1 = config_from_dict(raw, overrides={"self_distill.seed": 1})
    summary = self_distill(cfg1, policy=FakeStudent(2), progress=False)
    assert summary["gbar_hist"] == {"0.000": 1, "0.500": 1, "1.000": 1}
    assert summary["examples"] == {"verify": 1, "correct": 2}  # toy/0: correct; toy/1: both; toy/2: solved
    t2 = [json.loads(line) for line in paths.t2.read_text().splitlines()]
    assert sorted((e["problem_id"], e["rule"]) for e in t2) == [("toy/0", "correct"), ("toy/1", "correct"),
                                                                 ("toy/1", "verify")]
    for ex in t2:
        segs = [Segment.from_dict(s) for s in ex["segments"]]
        formatting.validate(segs)
        assert formatting.extract_final_answer(formatting.render(before_first_transition(ex["segments"]))) is None
        assert ex["mask_until_first_transition"] is (ex["rule"] == "correct")
    assert summary["sft"]["steps"] == 2 and summary["sft"]["kept"] == 3
    s2 = paths.model("S2")
    assert (s2 / "config.json").is_file() and any(s2.glob("*.safetensors")) and not (s2 / COPY_MARKER).exists()
    assert summary["samples_drawn"] == 6 and status_lines(cfg1, summary)[-1].startswith("step 7: S2 trained now: 2 steps")
    assert [e["rule"] for e in showcase(t2)] == ["verify", "correct"]
    again = self_distill(cfg1, policy=FakeStudent(2, fail_on=1), progress=False)
    assert again["sft"].get("skipped") is True
    assert "S2 already trained on this data with these settings" in status_lines(cfg1, again)[-1]


def test_malformed_student_attempts_are_not_used():
    rec = sample_record("p", "42", 0, False)
    rec["trajectory"]["segments"] = [{"kind": "think", "text": "x"}, {"kind": "text", "text": "stray </think> tag"},
                                     {"kind": "answer", "text": "\\boxed{1}"}]
    truncated = sample_record("p", "42", 1, False, truncated=True)
    truncated["trajectory"]["segments"] = truncated["trajectory"]["segments"][-1:]  # one open block only
    examples, report = select_examples({"p": [rec, truncated]}, {"p": [text_solution()]}, beta1=0.0, beta2=0.9)
    assert examples == [] and report["no_student_sample"]["correct"] == ["p"]
    assert report["unusable_student_samples"] == 2


def test_replay_mixes_a_seeded_sample_of_t1(tmp_path):
    """replay_t1 = r adds round(r·|T2|) distinct T1 examples (at most all of T1), the same ones on a
    rerun; 0 adds none; a missing T1 is an error naming the stage that writes it."""
    from dualdistill.common.store import write_jsonl
    from dualdistill.stages.self_distillation import replay_examples

    raw = tiny_cfg(tmp_path)
    cfg = config_from_dict(raw, overrides={"self_distill.replay_t1": 1.5})
    with pytest.raises(FileNotFoundError, match="stage 02"):
        replay_examples(cfg, 4)
    t1 = [{"key": f"t1-{i}", "problem_id": f"p{i}", "prompt": "x", "segments": []} for i in range(10)]
    write_jsonl(RunPaths.of(cfg).t1, t1)
    picked = replay_examples(cfg, 4)
    assert len(picked) == 6 and len({e["key"] for e in picked}) == 6
    assert all(e["replay"] for e in picked) and {e["key"] for e in picked} <= {e["key"] for e in t1}
    assert [e["key"] for e in replay_examples(cfg, 4)] == [e["key"] for e in picked]
    assert len(replay_examples(cfg, 100)) == 10
    assert replay_examples(config_from_dict(raw), 4) == []
    with pytest.raises(Exception, match="replay_t1"):
        config_from_dict(raw, overrides={"self_distill.replay_t1": -1})


# --- the paper's setup: official prompts and transitions, no contaminated problem ------------------------
class PromptRecorder(FakeStudent):
    def __init__(self, k: int) -> None:
        super().__init__(k, wrong="\\pi^{3}+q")  # wrong under both graders (official mode selects by its score)
        self.prompts: list[str] = []

    def generate(self, requests):
        self.prompts += [r.prompt for r in requests]
        return super().generate(requests)


def official_setup(tmp_path, monkeypatch, n: int = 4, k: int = 4):
    """An official-mode config over the first ``n`` training problems, each with one recorded text-teacher
    solution (monkeypatched in); returns (the official config, the project config's dict, the rows)."""
    import dualdistill.stages.self_distillation as SD

    base = make_cfg(tmp_path, n=n, k=k).model_dump(mode="json", exclude={"source"})
    cfg = config_from_dict({**base, "student": {"prompt_style": "official"},
                            "composition": {"transition_style": "official"}})
    rows = [json.loads(line) for line in TRAIN_FILE.read_text().splitlines()[:n]]
    solutions = {f"whole_training_set/{i}": [text_solution(str(r["answer"]))] for i, r in enumerate(rows)}
    monkeypatch.setattr(SD, "load_teacher_solutions", lambda cfg, problems: solutions)
    return cfg, base, rows


def test_official_style_samples_with_the_official_eval_request_and_writes_official_t2(tmp_path, monkeypatch):
    """``student.prompt_style: official``: the engine continues the official evaluation prompt byte for
    byte (the tool loop prefills its ``<think>\\n``); T2 is written in the official format too."""
    import dualdistill.stages.self_distillation as SD
    from dualdistill.common.store import read_jsonl
    from tests import official_ref as ref

    cfg, _, rows = official_setup(tmp_path, monkeypatch)
    policy = PromptRecorder(4)
    summary = SD.self_distill(cfg, until="select", policy=policy, progress=False)
    assert len(policy.prompts) == 16  # first generation call of every trajectory: prompt + "<think>\\n"
    assert set(policy.prompts) == {formatting.build_prompt(r["problem"].strip(), code=True, style="official-eval")
                                   for r in rows}
    t2 = read_jsonl(RunPaths.of(cfg).t2)
    assert t2 and all(ex["text_format"] == "official" for ex in t2)
    exported = read_jsonl(RunPaths.of(cfg).t2_official)
    assert summary["official_export"]["rows"] == len(exported) == len(t2)
    check = ref.load("math_utils/format_checking.py").check_format
    assert all(check(r["synthetic_data"]) for r in exported)
    assert all(f"<think>\n{FIX}\n\n" in r["synthetic_data"] or f"<think>\n{VERIFY}\n\n" in r["synthetic_data"]
               for r in exported)


def test_self_distillation_problems_exclude_near_duplicates_of_the_test_sets(tmp_path):
    """A training problem removed by stage 01 as a near-duplicate of a test problem is not sampled and
    gets no recorded R1 solution in self-distillation either."""
    from dualdistill.artifacts.current import self_distill_problems
    from dualdistill.stages.self_distillation import load_teacher_solutions

    lines = TRAIN_FILE.read_text().splitlines()[:4]
    (tmp_path / "test.jsonl").write_text(json.dumps({"problem": json.loads(lines[2])["problem"] + " ", "answer": 1}) + "\n")
    base = make_cfg(tmp_path, n=4, k=2)
    cfg = config_from_dict({**base.model_dump(mode="json", exclude={"source"}),
                            "data": {**base.data.model_dump(mode="json"),
                                     "test": [{"kind": "jsonl", "name": "leak", "path": str(tmp_path / "test.jsonl")}]}})
    problems = self_distill_problems(cfg)
    assert [p.id for p in problems] == ["whole_training_set/0", "whole_training_set/1", "whole_training_set/3"]
    records = sample_student(cfg, policy=FakeStudent(2), progress=False)
    assert {r["problem"]["id"] for r in records} == {p.id for p in problems}
    for p in problems:  # recorded R1 solutions (DeepMath's) for the problems sampled, and only those
        p.meta["r1_solution_1"] = f"Okay.</think>\\boxed{{{p.answer}}}"
    assert set(load_teacher_solutions(cfg, problems)) == {p.id for p in problems}  # none for /2


def test_official_mode_selects_by_the_official_score_and_reports_both_graders(tmp_path, monkeypatch):
    """Official mode: ḡ and the attempts picked come from the official ``compute_score`` verdicts (as the
    official selection did); T2's counts are reported under both graders. FakeStudent's wrong answers
    append a digit to the gold ("5" -> "50"): strictly wrong, found by the official substring score."""
    import dualdistill.stages.self_distillation as SD

    cfg, base, _ = official_setup(tmp_path, monkeypatch)
    summary = SD.self_distill(cfg, until="select", policy=FakeStudent(4), progress=False)
    assert summary["grader"] == "official" and SD.selection_grader(cfg) == "official"
    strict, off = summary["counts_by_grader"]["strict"], summary["counts_by_grader"]["official"]
    assert summary["counts"] == off
    assert strict["solved"] < strict["problems"] and off["solved"] == off["problems"] == 4
    assert summary["n_examples"] == 0  # every problem is "solved" by the official score
    lines = SD.status_lines(cfg, summary)
    assert any("by the official grader" in line and "strict" in line for line in lines)
    project = config_from_dict(base)
    assert SD.selection_grader(project) == "strict"
