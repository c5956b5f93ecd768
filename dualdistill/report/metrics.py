"""Evaluation metrics, recomputed from Sample records (docs/ARCHITECTURE.md).

    rows = summarize(records)            # one row per (model, benchmark, budget, subset)

Per group of records:

- ``accuracy``: mean correctness by the project's strict grader (``correct``); each problem weighs
  the same (its own mean over samples), which equals the paper's "mean over samples" when every
  problem has the same number of samples; ``accuracy_se``: its standard error over problems
  (sample standard deviation of the per-problem means / √n; 0 for a single problem) — the error
  bars of stage 06's accuracy figure;
- ``official_accuracy``: the same mean over the official-comparable verdicts (``official_correct``:
  the official ``compute_score`` rule, ``official_score.verdict``), the score the paper's numbers come from;
  ``score_disagreement``: the share of samples whose two verdicts differ; both over the samples that
  have an official verdict (``None`` when none has: records written before it existed);
- ``pass@k``: the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)`` per problem,
  averaged over the problems with ``n >= k``;
- ``maj@k``: majority vote over the final answers of a problem's first ``k`` samples (by sample
  index). Samples without a final answer do not vote. **Ties** go to the answer that appears first
  (lowest sample index). The vote is right when the earliest sample holding the chosen answer was
  graded correct; a problem whose first ``k`` samples give no answer at all counts as wrong.
  Answers are grouped by normalized string (``grading.normalize_answer``, then spaces,
  ``\\left``/``\\right``, ``$`` and a trailing ``.`` removed), and distinct groups can be merged
  with an ``equal`` function (e.g. ``grading.answers_equal``; off by default, as math-verify can
  take seconds per pair);
- tool use: ``tool_use_rate`` (share of samples with at least one code call), ``mean_code_calls``,
  ``code_error_rate`` and ``code_timeout_rate`` (per code call; ``None`` when there was no call);
- ``mean_tokens`` and its split over correct / incorrect samples, ``truncation_rate``
  (finish reason ``length``), ``format_valid_rate`` (``formatting.is_valid``).

Records with ``status != "ok"`` (the policy failed, e.g. an API error) are left out of every metric
and counted in ``n_failed``; a row with any is ``complete: false`` (its metrics rest on the survivors,
which are not a random sample: the short trajectories end first), and the tables mark it.

Subsets: every group has a row with ``subset = "all"``; problems with a ``subset``
(e.g. computation / insight) add one row per subset, and problems with a ``family`` (the synthetic
world) add one row per family with ``subset = "family:<name>"`` (the row's ``family`` key names it).

Paired differences (:func:`paired_rows`, :func:`paired_difference`): model B minus model A on the
problems both answered, per subset, with the standard error of the mean of the per-problem
differences (problems as the sampling unit) — how stage 05 says whether S2 − S1 is more than noise.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dualdistill.formats import formatting
from dualdistill.grading import grader as grading

GROUP_KEYS = ("model", "benchmark", "budget")
FAMILY_PREFIX = "family:"


# --- per-problem estimators -----------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples of which ``c`` are correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


_NORM_RE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\s|\$")


def normalize_answer_text(answer: str) -> str:
    """Canonical form of a final answer for grouping votes: ``grading.normalize_answer`` (units,
    ``142.0``, ``x=5``, ...) with all spaces, ``\\left``/``\\right``, ``$`` and a trailing ``.`` removed."""
    try:
        answer = grading.normalize_answer(answer)
    except Exception:  # a normalizer failure must not lose the vote: fall back to the raw text
        pass
    s = _NORM_RE.sub("", answer)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def majority_vote(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    *,
    equal: Callable[[str, str], bool] | None = None,
) -> tuple[str | None, bool]:
    """(chosen answer, whether it is right) of a vote over ``answers`` in sample order.

    ``None`` answers do not vote. Ties go to the answer seen first. ``equal`` (optional) merges
    groups whose normalized strings differ but whose answers are equivalent."""
    if len(answers) != len(correct):
        raise ValueError("answers and correct must have the same length")
    groups: list[dict[str, Any]] = []  # in order of first appearance
    by_norm: dict[str, dict[str, Any]] = {}
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        norm = normalize_answer_text(ans)
        group = by_norm.get(norm)
        if group is None and equal is not None:
            group = next((g for g in groups if _safe_equal(equal, g["answer"], ans)), None)
        if group is None:
            group = {"answer": ans, "count": 0, "first": i, "correct": bool(correct[i])}
            groups.append(group)
        by_norm[norm] = group
        group["count"] += 1
    if not groups:
        return None, False
    best = max(groups, key=lambda g: (g["count"], -g["first"]))
    return best["answer"], best["correct"]


def _safe_equal(equal: Callable[[str, str], bool], a: str, b: str) -> bool:
    try:
        return bool(equal(a, b))
    except Exception:  # an equivalence check that fails means "not shown equal"
        return False


def maj_at_k(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    k: int,
    *,
    equal: Callable[[str, str], bool] | None = None,
) -> bool:
    """Whether the majority answer of the first ``k`` samples is right."""
    if not 1 <= k <= len(answers):
        raise ValueError(f"need 1 <= k <= {len(answers)} samples, got k={k}")
    return majority_vote(answers[:k], correct[:k], equal=equal)[1]


def default_ks(n: int) -> list[int]:
    """k values reported for ``n`` samples per problem: 1, powers of two below n, and n."""
    ks = {1, n}
    k = 2
    while k < n:
        ks.add(k)
        k *= 2
    return sorted(ks)


# --- per-record features --------------------------------------------------------------------
def _final_answer(traj: dict[str, Any]) -> str | None:
    return formatting.extract_final_answer(formatting.render(formatting.as_segments(traj)))


def record_features(rec: dict[str, Any]) -> dict[str, Any]:
    """The numbers the metrics need from one Sample record."""
    try:
        traj = rec["trajectory"]
        problem = rec["problem"]
        feats = {
            "problem_id": str(problem["id"]),
            "subset": problem.get("subset"),
            "family": problem.get("family"),
            "sample": int(rec["sample"]),
            "correct": bool(rec["correct"]),
            "ok": rec.get("status", "ok") == "ok",
            "n_tokens": int(traj.get("n_tokens", 0)),
            "n_code_calls": int(traj.get("n_code_calls", 0)),
            "n_code_errors": int(traj.get("n_code_errors", 0)),
            "n_code_timeouts": int(traj.get("n_code_timeouts", 0)),
            "truncated": traj.get("finish_reason") == "length",
            "official_correct": None if rec.get("official_correct") is None else bool(rec["official_correct"]),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed sample record {rec.get('key', '<no key>')!r}: missing or bad {err}") from None
    feats["answer"] = rec["final_answer"] if "final_answer" in rec else _final_answer(traj)
    feats["format_valid"] = (
        bool(rec["format_valid"]) if "format_valid" in rec else formatting.is_valid(formatting.as_segments(traj))
    )
    return feats


# --- group metrics --------------------------------------------------------------------------
def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def compute_metrics(
    features: Iterable[dict[str, Any]],
    *,
    ks: Sequence[int] | None = None,
    equal: Callable[[str, str], bool] | None = None,
) -> dict[str, Any]:
    """Metrics of one group of per-record features (see the module docstring)."""
    feats = list(features)
    ok = [f for f in feats if f["ok"]]
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in ok:
        by_problem[f["problem_id"]].append(f)
    for samples in by_problem.values():
        samples.sort(key=lambda f: f["sample"])
    n_max = max((len(s) for s in by_problem.values()), default=0)
    ks = list(ks) if ks is not None else (default_ks(n_max) if n_max else [])

    per_problem = [_mean([float(f["correct"]) for f in s]) for s in by_problem.values()]
    out: dict[str, Any] = {
        "n_problems": len(by_problem),
        "n_samples": len(ok),
        "n_failed": len(feats) - len(ok),
        "complete": len(feats) == len(ok),
        "accuracy": _mean(per_problem),
        "accuracy_se": _sd(per_problem) / math.sqrt(len(per_problem)) if per_problem else None,
        **_official_scores(by_problem),
    }
    for k in ks:
        vals = [pass_at_k(len(s), sum(f["correct"] for f in s), k) for s in by_problem.values() if len(s) >= k]
        out[f"pass@{k}"] = _mean(vals)
    for k in ks:
        if k == 1:
            continue
        vals = [
            float(maj_at_k([f["answer"] for f in s], [f["correct"] for f in s], k, equal=equal))
            for s in by_problem.values()
            if len(s) >= k
        ]
        out[f"maj@{k}"] = _mean(vals)
    calls = sum(f["n_code_calls"] for f in ok)
    out.update(
        {
            "tool_use_rate": _mean([float(f["n_code_calls"] > 0) for f in ok]),
            "mean_code_calls": _mean([f["n_code_calls"] for f in ok]),
            "code_error_rate": sum(f["n_code_errors"] for f in ok) / calls if calls else None,
            "code_timeout_rate": sum(f["n_code_timeouts"] for f in ok) / calls if calls else None,
            "mean_tokens": _mean([f["n_tokens"] for f in ok]),
            "mean_tokens_correct": _mean([f["n_tokens"] for f in ok if f["correct"]]),
            "mean_tokens_incorrect": _mean([f["n_tokens"] for f in ok if not f["correct"]]),
            "truncation_rate": _mean([float(f["truncated"]) for f in ok]),
            "format_valid_rate": _mean([float(f["format_valid"]) for f in ok]),
        }
    )
    return out


def _official_scores(by_problem: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``official_accuracy`` (per-problem mean, as ``accuracy``) and ``score_disagreement`` over the
    samples with an official verdict."""
    scored = {pid: [f for f in s if f["official_correct"] is not None] for pid, s in by_problem.items()}
    scored = {pid: s for pid, s in scored.items() if s}
    flat = [f for s in scored.values() for f in s]
    return {
        "official_accuracy": _mean([_mean([float(f["official_correct"]) for f in s]) for s in scored.values()]),
        "score_disagreement": _mean([float(f["official_correct"] != f["correct"]) for f in flat]),
        "n_official_scored": len(flat),
    }


def latest_per_sample(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (model, benchmark, budget, problem, sample): the last one written, so a
    retried failure, or a rerun under a changed config, supersedes the older record."""
    latest: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        try:
            ident = (*(str(rec.get(k)) for k in GROUP_KEYS), str(rec["problem"]["id"]), int(rec["sample"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed sample record {rec.get('key', '<no key>')!r}: missing or bad {err}") from None
        latest.pop(ident, None)  # keep insertion order = order of the latest write
        latest[ident] = rec
    return list(latest.values())


def summarize(
    records: Iterable[dict[str, Any]],
    *,
    ks: Sequence[int] | None = None,
    equal: Callable[[str, str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Summary rows: one per (model, benchmark, budget, subset), subset "all" first, then the
    problems' subsets, then ``family:<name>`` rows. Records are deduplicated by
    :func:`latest_per_sample` first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for rec in latest_per_sample(records):
        missing = [k for k in GROUP_KEYS if rec.get(k) is None]
        if missing:
            raise ValueError(f"sample record {rec.get('key', '<no key>')!r} has no {', '.join(missing)}")
        groups[tuple(str(rec[k]) for k in GROUP_KEYS)].append(record_features(rec))
    rows: list[dict[str, Any]] = []
    for (model, benchmark, budget), feats in groups.items():
        parts: list[tuple[str, str | None, list[dict[str, Any]]]] = [("all", None, feats)]
        for subset in sorted({f["subset"] for f in feats if f["subset"] is not None}):
            parts.append((subset, None, [f for f in feats if f["subset"] == subset]))
        for family in sorted({f["family"] for f in feats if f["family"] is not None}):
            parts.append((FAMILY_PREFIX + family, family, [f for f in feats if f["family"] == family]))
        for subset, family, part in parts:
            row = {"model": model, "benchmark": benchmark, "budget": budget, "subset": subset, "family": family}
            row.update(compute_metrics(part, ks=ks, equal=equal))
            rows.append(row)
    return rows


# --- paired differences between two models ----------------------------------------------------
def _per_problem(features: Iterable[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    """Mean of ``value`` over the samples of each complete problem (none of its samples failed)."""
    sums: dict[str, list[float]] = defaultdict(list)
    incomplete = set()
    for f in features:
        if f["ok"]:
            sums[f["problem_id"]].append(value(f))
        else:
            incomplete.add(f["problem_id"])
    return {pid: sum(v) / len(v) for pid, v in sums.items() if pid not in incomplete}


def _sd(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for fewer than two values."""
    if len(xs) < 2:
        return 0.0
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


PAIRED_METRICS: dict[str, Callable[[dict[str, Any]], float]] = {
    "accuracy": lambda f: float(f["correct"]),
    "tool_use_rate": lambda f: float(f["n_code_calls"] > 0),
}


def paired_difference(features_a: Iterable[dict[str, Any]], features_b: Iterable[dict[str, Any]],
                      metric: str = "accuracy") -> dict[str, Any]:
    """``metric`` of B minus ``metric`` of A over the problems both answered completely (no failed
    sample on either side; ``n_dropped`` counts the problems of either side left out), with its
    standard error.

    Both models answer the same problems, so the difference is taken per problem: d_i = (B's mean
    over its samples of problem i) − (A's mean), and ``se`` = sd(d_i) / √n with the sample standard
    deviation over the n common problems — the standard error of a mean of paired differences, the
    problems being the sampling unit (it covers the samples' noise and the problems' spread alike).
    ``se_unpaired`` is what treating the two accuracies as independent would give, √(sd_a² + sd_b²)/√n
    over the same problems: larger, since a problem hard for A is mostly hard for B too."""
    value = PAIRED_METRICS[metric]
    fa, fb = list(features_a), list(features_b)
    a, b = _per_problem(fa, value), _per_problem(fb, value)
    common = [pid for pid in a if pid in b]
    n = len(common)
    seen = {f["problem_id"] for f in fa} | {f["problem_id"] for f in fb}
    out: dict[str, Any] = {"metric": metric, "n_problems": n, "n_dropped": len(seen) - n,
                           "n_samples_a": sum(f["ok"] and f["problem_id"] in b for f in fa),
                           "n_samples_b": sum(f["ok"] and f["problem_id"] in a for f in fb)}
    if not n:
        return {**out, "a": None, "b": None, "delta": None, "se": None, "se_unpaired": None}
    da, db = [a[p] for p in common], [b[p] for p in common]
    diffs = [y - x for x, y in zip(da, db, strict=True)]
    return {**out, "a": sum(da) / n, "b": sum(db) / n, "delta": sum(diffs) / n, "se": _sd(diffs) / math.sqrt(n),
            "se_unpaired": math.sqrt(_sd(da) ** 2 + _sd(db) ** 2) / math.sqrt(n)}


def default_comparisons(models: Sequence[str]) -> list[tuple[str, str]]:
    """(model, against) pairs worth a paired difference: S2 against S1, and S1 against every other
    model (S0, the baselines); [] without an S1."""
    if "S1" not in models:
        return []
    out = [("S2", "S1")] if "S2" in models else []
    return out + [("S1", m) for m in models if m not in ("S1", "S2")]


def paired_rows(records: Iterable[dict[str, Any]], comparisons: Sequence[tuple[str, str]],
                metrics: Sequence[str] = ("accuracy", "tool_use_rate")) -> list[dict[str, Any]]:
    """One row per (model, against, benchmark, budget, subset, metric): :func:`paired_difference` of
    ``model`` minus ``against`` (subset ``all``, then each subset of the problems). Records are
    deduplicated by :func:`latest_per_sample` first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for rec in latest_per_sample(records):
        groups[tuple(str(rec.get(k)) for k in GROUP_KEYS)].append(record_features(rec))
    rows: list[dict[str, Any]] = []
    for model, against in comparisons:
        for (m, benchmark, budget), feats in groups.items():
            if m != model or (against, benchmark, budget) not in groups:
                continue
            base = groups[(against, benchmark, budget)]
            subsets = ["all", *sorted({f["subset"] for f in feats if f["subset"] is not None})]
            for subset in subsets:
                pick = (lambda fs: fs) if subset == "all" else (lambda fs, s=subset: [f for f in fs if f["subset"] == s])
                for metric in metrics:
                    rows.append({"model": model, "against": against, "benchmark": benchmark, "budget": budget,
                                 "subset": subset, **paired_difference(pick(base), pick(feats), metric)})
    return rows
