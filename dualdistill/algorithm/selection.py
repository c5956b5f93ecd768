"""Step 6 of Algorithm 1 as pure functions: ḡ, the β1/β2 rules, the counts, and the T2 examples.

    gbars = gbar_by_problem(group_by_problem(samples))
    selection_counts(gbars, beta1=0.0, beta2=0.9)        # how many problems each rule selects
    examples, report = select_examples(by_problem, teacher_solutions, beta1=0.0, beta2=0.9)

Only problems with ḡ < 1 contribute (a problem S1 always solves has nothing left to teach):
ḡ > β1 gives a **verification** — a correct student trajectory (its final answer removed), the
verify transition and a text-teacher solution; ḡ < β2 gives a **correction** — an incorrect student
trajectory cut before its final answer, the code→text fix transition and a text-teacher solution.
Strict inequalities; both rules may fire for one problem. Only text-teacher solutions are used as
feedback. No sampling and no I/O here: stage 04, stage 06 and notebook 04 all call these functions,
so the rule has one definition.

``transition_style="official"`` places the transition as the official processing script does (a new
think block: ``"<think>\nWait, ...\n\n" + solution``; ``official.place_transitions``) and gives the
examples ``text_format: official``; a student attempt with a line outside any block cannot be
written that way and is not used. The attempt is cut as below in both styles (the official script
cuts a correction at its last ``</think>`` and a verification at ``<answer>``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dualdistill.common.store import record_key
from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import Segment, as_segments, r1_to_segments
from dualdistill.formats.problem import Problem
from dualdistill.formats.records import TrainingExample
from dualdistill.grading.grader import grade

PICKS = ("random", "shortest", "first")
MASK_MODES = ("wrong_first", "always", "never")
RULES = ("verify", "correct")
R1_FIELDS = ("r1_solution_1", "r1_solution_2", "r1_solution_3")


# --- ḡ and the counts ----------------------------------------------------------------------------------
def group_by_problem(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Sample records per problem id, in sample order."""
    out: dict[str, list[dict]] = {}
    for rec in records:
        out.setdefault(rec["problem"]["id"], []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: int(r["sample"]))
    return out


def short_problems(samples_by_problem: Mapping[str, list[dict]], k: int) -> list[str]:
    """Problems with fewer than ``k`` successful samples (their ḡ rests on fewer than K)."""
    return [pid for pid, recs in samples_by_problem.items() if len(_ok(recs)) < k]


def _ok(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r.get("status", "ok") == "ok"]


GRADERS = ("strict", "official")


def is_correct(rec: dict, grader: str = "strict") -> bool:
    """A sample's verdict: ``strict``, the project's grader (``correct``); ``official``, the official
    ``compute_score`` verdict (``official_correct``; not computable in time counts as wrong), which the
    official self-distillation selection used."""
    if grader == "strict":
        return bool(rec["correct"])
    if grader == "official":
        return bool(rec.get("official_correct"))
    raise ValueError(f"grader must be one of {GRADERS}, got {grader!r}")


def gbar(records: Iterable[dict], grader: str = "strict") -> float | None:
    """Mean correctness (by ``grader``) over the successful samples of one problem (None without any)."""
    ok = _ok(records)
    return sum(is_correct(r, grader) for r in ok) / len(ok) if ok else None


def gbar_by_problem(samples_by_problem: Mapping[str, list[dict]], grader: str = "strict") -> dict[str, float]:
    """ḡ per problem (by ``grader``); problems without a successful sample are left out."""
    out = {}
    for pid, recs in samples_by_problem.items():
        g = gbar(recs, grader)
        if g is not None:
            out[pid] = g
    return out


def problem_summaries(records: Iterable[dict]) -> list[dict]:
    """One row per problem, computed from all its records: n, correct, failed, ḡ, subset, family."""
    rows = []
    for pid, recs in group_by_problem(records).items():
        ok = _ok(recs)
        prob = recs[0]["problem"]
        rows.append({
            "problem_id": pid,
            "n": len(ok),
            "n_correct": sum(bool(r["correct"]) for r in ok),
            "n_failed": len(recs) - len(ok),
            "gbar": gbar(recs),
            "subset": prob.get("subset"),
            "family": prob.get("family"),
            "used_code": sum(int(r["trajectory"].get("n_code_calls", 0) > 0) for r in ok),
        })
    return rows


def gbar_histogram(gbars: Iterable[float]) -> dict[str, int]:
    """Counts per ḡ value (ḡ takes the values j/K), keys formatted ``"0.250"``, ascending."""
    counts = Counter(round(g, 6) for g in gbars)
    return {f"{g:.3f}": counts[g] for g in sorted(counts)}


def selection_counts(gbar_values: Iterable[float] | Mapping[str, float], beta1: float, beta2: float) -> dict[str, int]:
    """How many problems each rule selects for thresholds (β1, β2). Keys: ``problems``, ``solved``
    (ḡ = 1), ``eligible`` (ḡ < 1), ``verify`` (ḡ < 1 and ḡ > β1), ``correct`` (ḡ < 1 and ḡ < β2),
    ``both``, ``examples`` (verify + correct: the T2 size when every selected problem has a usable
    sample and a teacher solution) and ``problems_used``."""
    values = [float(g) for g in (gbar_values.values() if isinstance(gbar_values, Mapping) else gbar_values)]
    bad = [g for g in values if not 0.0 <= g <= 1.0]
    if bad:
        raise ValueError(f"ḡ values must lie in [0, 1], got {bad[:3]}")
    rules = [rules_for(g, beta1, beta2) for g in values]
    verify = sum("verify" in r for r in rules)
    correct = sum("correct" in r for r in rules)
    eligible = sum(g < 1 for g in values)
    return {
        "problems": len(values),
        "solved": len(values) - eligible,
        "eligible": eligible,
        "verify": verify,
        "correct": correct,
        "both": sum(len(r) == 2 for r in rules),
        "examples": verify + correct,
        "problems_used": sum(bool(r) for r in rules),
    }


def counts_by_grader(samples_by_problem: Mapping[str, list[dict]], beta1: float, beta2: float) -> dict[str, dict]:
    """:func:`selection_counts` with ḡ from each grader (strict, official): how T2 would differ."""
    return {g: selection_counts(gbar_by_problem(samples_by_problem, g), beta1, beta2) for g in GRADERS}


def selection_sweep(gbar_values: Sequence[float], beta1s: Sequence[float], beta2s: Sequence[float]) -> list[dict[str, Any]]:
    """:func:`selection_counts` over a grid; pairs with β1 > β2 (an invalid config) are left out."""
    return [{"beta1": b1, "beta2": b2, **selection_counts(gbar_values, b1, b2)}
            for b1 in beta1s for b2 in beta2s if b1 <= b2]


def rules_for(g: float, beta1: float, beta2: float) -> list[str]:
    """Rules that fire for one problem with mean correctness ``g`` (strict inequalities)."""
    if g >= 1:
        return []
    return [r for r, fires in (("verify", g > beta1), ("correct", g < beta2)) if fires]


# --- the examples ------------------------------------------------------------------------------------
def _recast_transitions(segments: list[Segment]) -> list[Segment]:
    """The student's own transition sentences become plain ``text`` (same rendering), so the
    example's *first* transition is the one selection appends and the loss mask covers the whole
    student attempt."""
    return [Segment("text", s.text, {**s.meta, "was": "transition"}) if s.kind == "transition" else s
            for s in segments]


def cut_before_answer(segments: list[Segment]) -> list[Segment]:
    """The student attempt without its final answer: the answer block and what follows it, any
    notice, and a trailing open (truncated) block are dropped; trailing pieces are trimmed until
    no final answer can be read from the rest."""
    segs = [s for s in formatting.strip_final_answer(segments) if s.kind != "notice"]
    while segs and segs[-1].meta.get("open"):
        segs.pop()
    segs = [s for s in segs if s.kind != "answer"]
    while segs and formatting.extract_final_answer(formatting.render(segs)) is not None:
        segs.pop()
    return segs


def student_part(rec: dict) -> list[Segment] | None:
    """The student attempt of a sample record as it goes before a transition: cut before its final
    answer, own transitions recast as text; None when nothing well-formed is left (e.g. a single
    truncated think block, or stray tags in bare text)."""
    segs = _recast_transitions(cut_before_answer(as_segments(rec["trajectory"])))
    if not segs:
        return None
    try:
        formatting.validate(segs, require_answer=False)
    except formatting.FormatError:
        return None
    return segs


def _pick(candidates: list[Any], mode: str, rng: random.Random, length: Any) -> Any:
    if mode == "first":
        return candidates[0]
    if mode == "shortest":
        return min(candidates, key=length)
    if mode == "random":
        return rng.choice(candidates)
    raise ValueError(f"pick must be one of {PICKS}, got {mode!r}")


def _student_len(rec: dict) -> int:
    traj = rec["trajectory"]
    return int(traj.get("n_tokens") or 0) or len(formatting.render(as_segments(traj)))


def _example(rec: dict, rule: str, student: list[Segment], transition: str, solution: list[Segment],
             g: float, mask: bool, sol_index: int, prompt_style: str = "r1", transition_style: str = "project") -> dict:
    prob = rec["problem"]
    key = "verify:code_to_text" if rule == "verify" else "fix:code_to_text"
    segments = [*student, Segment("transition", transition, {"transition": key}), *solution]
    formatting.validate(segments)
    if transition_style == "official":
        segments = official.place_transitions(segments)
        official.validate(segments)
    return TrainingExample.build(
        prob, key=record_key("t2", prob["id"], rule),
        prompt=formatting.build_prompt(prob["problem"], code=True, style=prompt_style),
        segments=segments, source="t2", text_format=transition_style,
        mask_until_first_transition=mask, rule=rule, gbar=g, student_sample=int(rec["sample"]),
        teacher_solution=sol_index,
    ).to_dict()


def select_examples(
    samples_by_problem: Mapping[str, list[dict]],
    teacher_solutions: Mapping[str, list[Any]],
    *,
    beta1: float,
    beta2: float,
    pick: str = "random",
    transitions: Mapping[str, str] | None = None,
    seed: int = 0,
    mask_before_transition: str = "wrong_first",
    prompt_style: str = "r1",
    transition_style: str = "project",
    grader: str = "strict",
) -> tuple[list[dict], dict]:
    """Step 6: T2 training examples from cached samples (pure; no sampling, no I/O).

    ``samples_by_problem``: problem id -> sample records (``problem``, ``sample``, ``trajectory``,
    ``correct``, ``status``). ``teacher_solutions``: problem id -> text-teacher solutions
    (Trajectory, trajectory dicts or segment lists), each ending in its one answer block.
    ``pick``: which student sample / teacher solution is used — ``random`` (seeded per problem and
    rule), ``shortest`` (fewest tokens), ``first``. ``mask_before_transition``: ``wrong_first``
    masks the student part of corrections only, ``always`` of both rules, ``never`` of none.
    ``transition_style``: ``project`` (a transition line) or ``official`` (module docstring).
    ``grader``: whose verdicts make ḡ and which attempts are picked (:func:`is_correct`): the
    project's strict grade, or the official score (official mode, as the official selection did);
    the report's ``counts_by_grader`` holds the counts under both.

    Returns ``(examples, report)``; the report counts problems per rule and lists problems that
    would contribute but have no teacher solution (``no_teacher_solution``) or no usable student
    sample (``no_student_sample``), and problems without any successful sample (``no_samples``).
    """
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")
    if transition_style not in ("project", "official"):
        raise ValueError(f"transition_style must be project or official, got {transition_style!r}")
    if mask_before_transition not in MASK_MODES:
        raise ValueError(f"mask_before_transition must be one of {MASK_MODES}, got {mask_before_transition!r}")
    transitions = dict(formatting.DEFAULT_TRANSITIONS if transitions is None else transitions)
    sentence = {"verify": transitions["verify:code_to_text"], "correct": transitions["fix:code_to_text"]}
    mask = {
        "verify": mask_before_transition == "always",
        "correct": mask_before_transition in ("wrong_first", "always"),
    }
    gbars = gbar_by_problem(samples_by_problem, grader)
    report: dict[str, Any] = {
        "beta1": beta1, "beta2": beta2, "pick": pick, "grader": grader,
        **selection_counts(gbars, beta1, beta2),
        "counts_by_grader": counts_by_grader(samples_by_problem, beta1, beta2),
        "problems": len(samples_by_problem),
        "no_samples": sorted(set(samples_by_problem) - set(gbars)),
        "examples": {r: 0 for r in RULES},
        "no_teacher_solution": [],
        "invalid_teacher_solution": 0,
        "no_student_sample": {r: [] for r in RULES},
        "unusable_student_samples": 0,
    }
    examples: list[dict] = []
    for pid, g in gbars.items():
        rules = rules_for(g, beta1, beta2)
        if not rules:
            continue
        solutions = []
        for i, sol in enumerate(teacher_solutions.get(pid, [])):
            segs = as_segments(sol)
            if formatting.is_valid(segs):
                solutions.append((i, segs))
            else:
                report["invalid_teacher_solution"] += 1
        if not solutions:
            report["no_teacher_solution"].append(pid)
            continue
        ok = _ok(samples_by_problem[pid])
        for rule in rules:
            rng = random.Random(f"{seed}|{pid}|{rule}")
            want = rule == "verify"
            candidates = []
            for rec in ok:
                if is_correct(rec, grader) != want:
                    continue
                student = student_part(rec)
                if student is not None and transition_style == "official" and any(
                        s.kind in formatting.BARE_KINDS for s in student):
                    student = None  # a line outside any block: the official format has none
                if student is None:
                    report["unusable_student_samples"] += 1
                else:
                    candidates.append((rec, student))
            if not candidates:
                report["no_student_sample"][rule].append(pid)
                continue
            rec, student = _pick(candidates, pick, rng, lambda c: (_student_len(c[0]), int(c[0]["sample"])))
            sol_index, solution = _pick(solutions, pick, rng, lambda s: (len(formatting.render(s[1])), s[0]))
            ex = _example(rec, rule, student, sentence[rule], solution, g, mask[rule], sol_index, prompt_style,
                          transition_style)
            examples.append(ex)
            report["examples"][rule] += 1
    report["n_examples"] = len(examples)
    report["n_no_teacher_solution"] = len(report["no_teacher_solution"])
    return examples, report


# --- text-teacher solutions (the feedback) -------------------------------------------------------------
def teacher_solutions_from_records(records: Iterable[dict]) -> dict[str, list[list[Segment]]]:
    """Correct text-teacher trajectories (either role) from step-1 teacher rollout records."""
    out: dict[str, list[list[Segment]]] = {}
    for i, rec in enumerate(records):
        try:
            if rec.get("teacher") != "text" or not rec.get("correct") or rec.get("status", "ok") != "ok":
                continue
            pid = rec["problem"]["id"]
            segs = as_segments(rec["trajectory"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"teacher rollout record {i} ({rec.get('key', '?')}): missing {err}") from None
        out.setdefault(pid, []).append(segs)
    return out


def parse_r1_solution(text: Any) -> list[Segment] | None:
    """A recorded R1 trace (``…</think> final text``) as think + answer segments (the replay
    backend's converter), or None when it has no ``\\boxed{}`` final answer or has tags inside."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        segs = r1_to_segments(text)
    except ValueError:
        return None
    return segs if formatting.is_valid(segs) else None


def teacher_solutions_from_problems(
    problems: Iterable[Problem], fields: Iterable[str] = R1_FIELDS,
    *, check: bool = True,
) -> dict[str, list[list[Segment]]]:
    """Replay text-teacher solutions from ``Problem.meta`` (e.g. DeepMath-103K's r1_solution_*);
    with ``check`` only those whose final answer grades correct against the problem's answer."""
    fields = list(fields)
    out: dict[str, list[list[Segment]]] = {}
    for p in problems:
        for f in fields:
            segs = parse_r1_solution(p.meta.get(f))
            if segs is None:
                continue
            if check:
                if not grade(formatting.render(segs), p.answer):
                    continue
            out.setdefault(p.id, []).append(segs)
    return out

