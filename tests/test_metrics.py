"""Metrics: pass@k against brute force, maj@k ties, and every summary column on hand-built records."""

from __future__ import annotations

import itertools
import math

import pytest

from dualdistill.formats.formatting import Segment, answer_text
from dualdistill.formats.problem import Problem
from dualdistill.formats.records import SampleRecord
from dualdistill.formats.trajectory import Trajectory
from dualdistill.report import metrics


# --- pass@k ----------------------------------------------------------------------------------
def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) holding at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert math.isclose(metrics.pass_at_k(n, c, k), brute_pass_at_k(n, c, k), abs_tol=1e-12), (n, c, k)


def test_pass_at_1_is_accuracy_and_bad_inputs_raise():
    assert metrics.pass_at_k(16, 5, 1) == pytest.approx(5 / 16)
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError):
            metrics.pass_at_k(n, c, k)


def test_default_ks():
    assert metrics.default_ks(1) == [1]
    assert metrics.default_ks(5) == [1, 2, 4, 5]
    assert metrics.default_ks(16) == [1, 2, 4, 8, 16]


# --- maj@k -----------------------------------------------------------------------------------
# (answers, correct, k, expected): ties go to the answer seen first; None does not vote.
MAJ_CASES = [
    (["3", "4"], [False, True], 2, False),  # 1-1 tie: "3" came first
    (["4", "3"], [True, False], 2, True),  # same tie, other order
    (["3", "4", "4", "3"], [False, True, True, False], 4, False),  # 2-2 tie: "3" first
    (["3", "4", "4"], [False, True, True], 3, True),  # clear majority
    (["3", "4", "4"], [False, True, True], 1, False),  # only the first sample votes
    ([None, None, "5"], [False, False, True], 3, True),  # missing answers do not vote
    ([None, None], [False, False], 2, False),  # nothing to vote on
    (["\\frac{1}{2}", "\\dfrac{1}{2}", "7"], [True, True, False], 3, True),  # normalized strings agree
    (["7", "\\left(1,2\\right)", "(1, 2)"], [False, True, True], 3, True),  # \left/\right and spaces
]


@pytest.mark.parametrize(("answers", "correct", "k", "expected"), MAJ_CASES)
def test_maj_at_k(answers, correct, k, expected):
    assert metrics.maj_at_k(answers, correct, k) is expected


def test_majority_vote_merges_with_equal_function():
    # 0.5 and 1/2 differ as strings: 7 leads with 3 votes ...
    answers, correct = ["0.5", "7", "\\frac{1}{2}", "7", "7"], [True, False, True, False, False]
    assert metrics.majority_vote(answers, correct) == ("7", False)

    # ... unless 0.5 and 1/2 are recognised as the same answer (3-3 tie, 0.5 first)
    def equal(a: str, b: str) -> bool:
        vals = {"0.5": 0.5, "\\frac{1}{2}": 0.5, "7": 7.0}
        return vals[a] == vals[b]

    answers.append("0.5")
    correct.append(True)
    assert metrics.majority_vote(answers, correct) == ("7", False)
    assert metrics.majority_vote(answers, correct, equal=equal) == ("0.5", True)


def test_majority_vote_equal_that_raises_counts_as_different():
    def boom(a: str, b: str) -> bool:
        raise TimeoutError

    assert metrics.majority_vote(["1", "2", "2"], [True, False, False], equal=boom) == ("2", False)


# --- hand-built records ----------------------------------------------------------------------
def traj(answer: str | None, *, calls: int = 0, errors: int = 0, timeouts: int = 0, tokens: int = 100,
         finish: str = "answer", valid: bool = True) -> Trajectory:
    segs = [Segment("think", "reasoning")]
    for i in range(calls):
        status = "timeout" if i < timeouts else "error" if i < timeouts + errors else "ok"
        segs += [Segment("code", "print(1)", {"status": status}), Segment("executor", "1", {"status": status})]
    if answer is not None:
        segs.append(Segment("answer", answer_text(answer)))
    if not valid:
        segs.append(Segment("think", "rambling after the answer"))
    return Trajectory(problem_id="p", role="m", prompt="P", segments=segs, finish_reason=finish, n_tokens=tokens,
                      n_code_calls=calls, n_code_errors=errors + timeouts, n_code_timeouts=timeouts)


def rec(problem: Problem, sample: int, t: Trajectory, correct: bool, *, model="M", bench="B", budget="S") -> dict:
    return SampleRecord.from_trajectory(t, problem=problem, correct=correct,
                                        key=f"{model}|{bench}|{budget}|{problem.id}|{sample}", model=model,
                                        benchmark=bench, budget=budget, budget_tokens=512, sample=sample).to_dict()


P1 = Problem("B/1", "q1", "10", "B", subset="computation", family="modpow")
P2 = Problem("B/2", "q2", "20", "B", subset="insight", family="cycle")
P3 = Problem("B/3", "q3", "30", "B", subset="insight", family="cycle")


def hand_records() -> list[dict]:
    return [
        # P1: 2/3 correct, code on every sample
        rec(P1, 0, traj("10", calls=2, errors=1, tokens=100), True),
        rec(P1, 1, traj("11", calls=1, timeouts=1, tokens=300), False),
        rec(P1, 2, traj("10", calls=1, tokens=200), True),
        # P2: 0/3 correct, no code; one truncated (no answer), one with text after the answer
        rec(P2, 0, traj(None, tokens=512, finish="length"), False),
        rec(P2, 1, traj("21", tokens=400, valid=False), False),
        rec(P2, 2, traj("22", tokens=300), False),
        # P3: 1/3 correct; 2-sample majority is a tie (30 vs 31) won by the first
        rec(P3, 0, traj("30", tokens=50), True),
        rec(P3, 1, traj("31", tokens=60), False),
        rec(P3, 2, traj("31", tokens=70), False),
    ]


def test_compute_metrics_on_hand_built_records():
    rows = metrics.summarize(hand_records())
    row = next(r for r in rows if r["subset"] == "all")
    assert (row["model"], row["benchmark"], row["budget"]) == ("M", "B", "S")
    assert row["n_problems"] == 3 and row["n_samples"] == 9 and row["n_failed"] == 0
    assert row["accuracy"] == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)
    assert row["pass@1"] == pytest.approx(row["accuracy"])
    # pass@2: P1 1 - C(1,2)/C(3,2) = 1; P2 0; P3 1 - C(2,2)/C(3,2) = 2/3
    assert row["pass@2"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert row["pass@3"] == pytest.approx((1 + 0 + 1) / 3)
    # maj@2: P1 tie 10/11 -> 10 (right); P2 tie None/21 -> 21 (wrong); P3 tie 30/31 -> 30 (right)
    assert row["maj@2"] == pytest.approx(2 / 3)
    # maj@3: P1 10 (right); P2 21/22 tie -> 21 wrong; P3 31 wins (wrong)
    assert row["maj@3"] == pytest.approx(1 / 3)
    assert row["tool_use_rate"] == pytest.approx(3 / 9)
    assert row["mean_code_calls"] == pytest.approx(4 / 9)
    assert row["code_error_rate"] == pytest.approx(2 / 4)  # 1 error + 1 timeout over 4 calls
    assert row["code_timeout_rate"] == pytest.approx(1 / 4)
    tokens = [100, 300, 200, 512, 400, 300, 50, 60, 70]
    assert row["mean_tokens"] == pytest.approx(sum(tokens) / 9)
    assert row["mean_tokens_correct"] == pytest.approx((100 + 200 + 50) / 3)
    assert row["mean_tokens_incorrect"] == pytest.approx((300 + 512 + 400 + 300 + 60 + 70) / 6)
    assert row["truncation_rate"] == pytest.approx(1 / 9)
    assert row["format_valid_rate"] == pytest.approx(7 / 9)  # P2 sample 0 (no answer) and 1 (text after)


def test_official_comparable_score_and_disagreement():
    """Records carry both verdicts; the row has both accuracies and how often they differ."""
    records = hand_records()
    assert all(r["official_correct"] is None for r in records)  # not given: no official numbers
    row = metrics.summarize(records)[0]
    assert row["official_accuracy"] is None and row["score_disagreement"] is None and row["n_official_scored"] == 0
    official = [True, False, True, False, False, False, True, False, True]  # P3 sample 2 ("31") by substring
    for r, v in zip(records, official, strict=True):
        r["official_correct"] = v
    records[4]["official_correct"] = None  # a sample without a verdict is left out of both figures
    row = metrics.summarize(records)[0]
    assert row["accuracy"] == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)  # the strict score is unchanged
    assert row["official_accuracy"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    assert row["score_disagreement"] == pytest.approx(1 / 8) and row["n_official_scored"] == 8


def test_subset_and_family_rows():
    rows = {r["subset"]: r for r in metrics.summarize(hand_records())}
    assert list(rows) == ["all", "computation", "insight", "family:cycle", "family:modpow"]
    assert rows["computation"]["n_problems"] == 1 and rows["computation"]["accuracy"] == pytest.approx(2 / 3)
    assert rows["insight"]["n_problems"] == 2 and rows["insight"]["accuracy"] == pytest.approx(1 / 6)
    assert rows["insight"]["tool_use_rate"] == 0 and rows["insight"]["code_error_rate"] is None
    assert rows["family:cycle"]["family"] == "cycle" and rows["all"]["family"] is None
    assert rows["family:modpow"]["tool_use_rate"] == 1.0


def test_groups_failed_records_and_latest_record_wins():
    recs = hand_records()
    failed = traj(None, finish="error")
    failed.meta["error"] = "HTTP 500"
    recs.append(rec(P1, 3, failed, False))
    # a later record of P2 sample 2 (e.g. a rerun) supersedes the older one
    recs.append(rec(P2, 2, traj("20", tokens=300), True))
    recs.append(rec(P1, 0, traj("10"), True, model="Other"))
    rows = metrics.summarize(recs)
    main = next(r for r in rows if r["model"] == "M" and r["subset"] == "all")
    other = next(r for r in rows if r["model"] == "Other" and r["subset"] == "all")
    assert main["n_failed"] == 1 and main["n_samples"] == 9
    assert main["accuracy"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert other["n_samples"] == 1 and other["accuracy"] == 1.0 and other["pass@1"] == 1.0
    assert "pass@2" not in other and "maj@2" not in other


def test_pass_at_k_skips_problems_with_too_few_samples():
    recs = [r for r in hand_records() if not (r["problem"]["id"] == "B/3" and r["sample"] == 2)]
    row = metrics.summarize(recs)[0]
    assert row["pass@3"] == pytest.approx((1 + 0) / 2)  # P3 has only 2 samples
    assert row["accuracy"] == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)


def test_malformed_records_name_the_record():
    bad = hand_records()[0]
    del bad["model"]
    with pytest.raises(ValueError, match=r"M\|B\|S\|B/1\|0.*model"):
        metrics.summarize([bad])
    bad = hand_records()[0]
    del bad["trajectory"]
    with pytest.raises(ValueError, match="trajectory"):
        metrics.summarize([bad])


def test_gbar_is_the_per_problem_mean_correctness():
    from dualdistill.algorithm.selection import gbar_by_problem, group_by_problem

    assert gbar_by_problem(group_by_problem(hand_records())) == pytest.approx({"B/1": 2 / 3, "B/2": 0.0, "B/3": 1 / 3})


# --- paired differences -------------------------------------------------------------------------
def test_paired_difference_by_hand():
    """B − A per problem, se = sd(d)/√n over the common problems (n − 1 in the sd)."""
    a = [metrics.record_features(r) for r in hand_records()]  # per problem: P1 2/3, P2 0, P3 1/3
    b_recs = [rec(P1, 0, traj("10", calls=1), True), rec(P2, 0, traj("20"), True), rec(P2, 1, traj("21"), False),
              rec(P3, 0, traj("30"), True)]
    b = [metrics.record_features(r) for r in b_recs]  # P1 1, P2 1/2, P3 1
    out = metrics.paired_difference(a, b)
    d = [1 - 2 / 3, 0.5 - 0, 1 - 1 / 3]
    mean = sum(d) / 3
    sd = (sum((x - mean) ** 2 for x in d) / 2) ** 0.5
    assert out["n_problems"] == 3 and out["n_samples_a"] == 9 and out["n_samples_b"] == 4
    assert out["delta"] == pytest.approx(mean) and out["se"] == pytest.approx(sd / 3 ** 0.5)
    assert out["a"] == pytest.approx(1 / 3) and out["b"] == pytest.approx(5 / 6)
    assert out["se_unpaired"] > out["se"]
    tool = metrics.paired_difference(a, b, "tool_use_rate")  # A: P1 3/3 code; B: P1 1/1 code, others none
    assert tool["delta"] == pytest.approx(0.0)
    # only common problems count; nothing in common is None, not an error
    assert metrics.paired_difference(a, b[:1])["n_problems"] == 1
    assert metrics.paired_difference(a, [])["delta"] is None


def test_paired_rows_compare_models_per_subset():
    recs = hand_records()
    s1 = [dict(r, model="S1") for r in recs]
    s2 = [dict(r, model="S2", correct=True) for r in recs]
    assert metrics.default_comparisons(["S0", "S1", "S2", "text_only"]) == [("S2", "S1"), ("S1", "S0"),
                                                                            ("S1", "text_only")]
    assert metrics.default_comparisons(["S0", "S2"]) == []
    rows = metrics.paired_rows(s1 + s2, [("S2", "S1"), ("S1", "S0")])  # no S0 records: no row for it
    acc = {r["subset"]: r for r in rows if r["metric"] == "accuracy"}
    assert set(acc) == {"all", "computation", "insight"} and all(r["against"] == "S1" for r in rows)
    assert acc["all"]["delta"] == pytest.approx(1 - (2 / 3 + 0 + 1 / 3) / 3)
    assert acc["computation"]["n_problems"] == 1 and acc["computation"]["se"] == 0.0
