"""What the notebooks show besides figures: answers coloured by their grade, the segments without loss
greyed, showcases picked by what they show (04), the world's expected notices as information and what
was reused (01), and each notebook's closing sentences computed from its own metrics."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from dualdistill.config import load_config
from dualdistill.report import story, views
from dualdistill.stages import analysis, self_distillation, teacher_rollouts

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "analysis"


def _seg(kind: str, text: str, status: str | None = None) -> dict:
    return {"kind": kind, "text": text, "meta": {"status": status} if status else {}}


# --- answers by grade, no-loss segments ------------------------------------------------------------
@pytest.mark.parametrize(("correct", "colour", "label"), [(True, views.ANSWER[True], "answer · right"),
                                                          (False, views.ANSWER[False], "answer · wrong")])
def test_answer_block_is_coloured_by_the_grade(correct, colour, label):
    record = {"problem": {"id": "p", "answer": "16"}, "correct": correct,
              "trajectory": {"segments": [_seg("think", "t"), _seg("answer", "\\boxed{16}")]}}
    html = views.render_record_html(record)
    assert f"background:{colour}" in html and label in html
    assert views.ANSWER[not correct] not in html


def test_a_corrections_attempt_and_executor_output_carry_no_loss():
    example = {"mask_until_first_transition": True, "segments": [
        _seg("think", "try"), _seg("code", "print(1)", "ok"), _seg("executor", "1", "ok"),
        _seg("transition", "Wait, the code is not correct, let's try text reasoning."),
        _seg("think", "solve"), _seg("code", "print(2)", "error"), _seg("executor", "E", "error"),
        _seg("answer", "\\boxed{2}")]}
    assert views.no_loss_segments(example) == {0, 1, 2, 5, 6}  # the attempt, failed code, executor output
    assert views.no_loss_segments({**example, "mask_until_first_transition": False}) == {2, 5, 6}
    html = views.example_html(example)
    assert html.count("· no loss") == 5 and html.count("opacity:0.5") == 5


# --- showcases of notebook 04 -------------------------------------------------------------------
def _t2(rule: str, pid: str, attempt: list[dict]) -> dict:
    tail = [_seg("transition", "Wait"), _seg("think", "text"), _seg("answer", "\\boxed{16}")]
    return {"rule": rule, "problem_id": pid, "student_sample": 0, "answer": "16", "gbar": 0.5,
            "mask_until_first_transition": rule == "correct", "segments": attempt + tail}


def _sample(pid: str, answer: str, correct: bool) -> dict:
    return {"problem": {"id": pid}, "sample": 0, "final_answer": answer, "correct": correct}


def test_showcase_picks_a_correction_that_really_failed_and_a_real_verification():
    printed_right = _t2("correct", "a", [_seg("code", "x", "ok"), _seg("executor", "16", "ok")])  # misleading
    failed = _t2("correct", "b", [_seg("code", "x", "error"), _seg("executor", "NameError", "error")])
    text_verify = _t2("verify", "c", [_seg("think", "I think 16")])
    code_verify = _t2("verify", "d", [_seg("code", "x", "ok"), _seg("executor", "16\n", "ok")])
    samples = [_sample("a", "17", False), _sample("b", "5", False), _sample("c", "16", True), _sample("d", "16", True)]
    shown = self_distillation.showcase([printed_right, failed, text_verify, code_verify], samples)
    assert [(e["rule"], e["problem_id"]) for e in shown] == [("verify", "d"), ("correct", "b")]
    assert "its program failed" in shown[1]["why"] and "'5' (removed here) was graded wrong" in shown[1]["why"]
    assert "printed the gold answer" in shown[0]["why"] and "graded right" in shown[0]["why"]
    # without anything better, the misleading one is still shown, and said to be what it is
    only = self_distillation.showcase([printed_right], samples)
    assert "printed the gold answer 16" in only[0]["why"] and "a mistake after the code" in only[0]["why"]


# --- notebook 01 --------------------------------------------------------------------------------
def test_world_notices_are_collected_not_printed(capsys):
    with teacher_rollouts.world_notices() as notices:
        logging.getLogger("dualdistill.world.families").warning("world %s split: digit_count ran out", "stage0")
    assert notices == ["world stage0 split: digit_count ran out"]
    assert "ran out" not in capsys.readouterr().err
    assert logging.getLogger("dualdistill.world").propagate  # restored


def test_rollout_status_says_what_was_reused_and_drawn():
    result = {"teacher_rollouts": {"records": 96, "new_records": 10, "path": "r.jsonl"},
              "stage0": {"records": 50, "new_records": 0, "path": "s.jsonl"}}
    assert teacher_rollouts.status_lines(result) == [
        "teacher rollouts (y1 and y2): 96 records — 86 reused from r.jsonl, 10 drawn now",
        "stage-0 traces: 50 records — 50 reused from s.jsonl, 0 drawn now"]


# --- closing sentences --------------------------------------------------------------------------
def test_notebook_06_closes_with_the_result_and_how_much_reruns_vary(tmp_path):
    shutil.copytree(FIXTURE / "run", tmp_path / "outputs" / "fixture")
    cfg = load_config(FIXTURE / "params.yaml", {"output_dir": str(tmp_path / "outputs")})
    text = story.story_after("06", analysis.load_eval_rows(cfg), analysis.eval_paired(cfg))
    assert text.startswith("On world_test (budget S, 4 problems): on computation, S0 leads the other models (25%) "
                           "and S1 gets 100% ± 0; on insight, S0 leads the other models (25%) and S1 gets 50% ± 0.")
    assert "S2 − S1 = +12.5 ± 12.5 points over the same 4 problems: within noise" in text
    assert "may differ from these by about the paired standard error, ±12.5 points for S2 − S1 here" in text
    assert "**Next:**" in text


def test_notebook_01_closes_with_each_teachers_home_ground():
    table = [{"level": "subset", "group": g, "teacher": t, "role": "first", "accuracy": a}
             for g, t, a in (("computation", "agent", 1.0), ("computation", "text", 0.3),
                             ("insight", "agent", 0.0), ("insight", "text", 0.78))]
    text = story.after_01({"teacher_rollouts": {"records": 96, "problems": 48, "accuracy_table": table}})
    assert "on computation problems the agent teacher was right 100% of the time (the text teacher 30%)" in text
    assert "on insight problems the text teacher was right 78% of the time (the agent teacher 0%)" in text
    assert "notebook 02" in text


def test_closing_sentences_do_not_crown_a_tie_or_call_zero_a_loss():
    rows = [{"model": m, "benchmark": "w", "budget": "S", "subset": s, "accuracy": 0.0, "accuracy_se": 0.0,
             "n_problems": 3} for m in ("S0", "text_only", "S1", "S2") for s in ("all", "insight")]
    paired = [{"model": "S2", "against": "S1", "benchmark": "w", "budget": "S", "subset": "all",
               "metric": "accuracy", "delta": 0.0, "se": 0.0, "n_problems": 3}]
    text = story.after_05(rows, paired)
    assert "on insight, no other model leads (all at 0%) and S1 gets 0% ± 0" in text
    assert "S2 − S1 = +0.0 ± 0.0 points over the same 3 problems: no difference." in text


def test_showcase_says_when_the_attempt_gave_no_answer():
    text_only = _t2("correct", "e", [_seg("think", "I am not sure")])
    (shown,) = self_distillation.showcase([text_only], [_sample("e", None, False)])
    assert "it reasoned in text only; it gave no final answer (graded wrong)" in shown["why"]
