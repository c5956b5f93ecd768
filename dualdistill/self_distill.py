"""Self-distillation (Algorithm 1, steps 5–7): sample S1, select T2 with β1/β2, SFT S1 on T2 → S2.

    python -m dualdistill.self_distill params/smoke.yaml self_distill.beta2=0.8
    python -m dualdistill.self_distill params/smoke.yaml --stage sample   # or select, train

Step 5 (:func:`sample_student`): K trajectories per training problem from S1 with tools, graded,
ḡ = mean correctness per problem. Samples are resumable records (``self_distill/samples.jsonl``);
a rerun generates only the missing ones, and the per-problem summary beside them
(``self_distill/problems.jsonl``) is recomputed from *all* records (the official sampler's running
summary reset on resume). Changing K, β1, β2 or the pick rule never resamples.

Step 6 (:func:`select_examples`, pure): only problems with ḡ < 1 contribute —
ḡ > β1: a correct student trajectory (final answer removed) + verify transition + a text-teacher
solution; ḡ < β2: an incorrect student trajectory cut before its final answer + code→text fix
transition + a text-teacher solution. Strict inequalities; both rules may fire for one problem.
:func:`selection_counts` is the one definition of "how many problems each rule selects".

Step 7 (:func:`run_self_distillation`): write T2 and SFT S1 on it → S2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dualdistill import formatting
from dualdistill.config import PolicyConfig, RunConfig, load_config, parse_override
from dualdistill.formatting import Segment
from dualdistill.paths import RunPaths
from dualdistill.problems import Problem, load_sources
from dualdistill.store import JsonlStore, read_jsonl, record_key, write_jsonl
from dualdistill.trajectory import Trajectory

log = logging.getLogger(__name__)

MODEL = "S1"  # the sampled model
OUT_MODEL = "S2"  # the trained model
BENCHMARK = "train"  # the ``benchmark`` field of self-distillation sample records
PICKS = ("random", "shortest", "first")
MASK_MODES = ("wrong_first", "always", "never")
RULES = ("verify", "correct")
COPY_MARKER = "copied_from_s1.json"  # in models/S2 when T2 was empty


# --- where things live ---------------------------------------------------------------------------
def problem_summary_path(cfg: RunConfig) -> Path:
    """Per-problem ḡ summary, beside the samples (recomputed from all records)."""
    return RunPaths.of(cfg).sd_samples.with_name("problems.jsonl")


def stage_summary_path(cfg: RunConfig) -> Path:
    return RunPaths.of(cfg).sd_samples.with_name("summary.json")


def selection_report_path(cfg: RunConfig) -> Path:
    return RunPaths.of(cfg).t2.with_name("selection.json")


def sample_config_hash(cfg: RunConfig) -> str:
    """Hash of what the samples depend on: everything that made S1, plus the sampling settings.

    K, max_problems, β1, β2, pick and the S2 SFT settings are left out on purpose (changing them
    reuses the samples), and so is the sampling backend (hf / vllm / openai draw from one model)."""
    d = cfg.model_dump(mode="json")
    sd = d["self_distill"]
    blob = {
        "world": d["world"],
        "train": d["data"]["train"],
        "teachers": d["teachers"],
        "student": {k: v for k, v in d["student"].items() if k != "backend"},
        "composition": d["composition"],
        "sft": d["sft"],
        "sampling": {k: sd[k] for k in ("temperature", "budget", "max_code_calls", "seed")},
        "code_timeout": d["sandbox"]["timeout"],
    }
    raw = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


# --- step 5: sampling --------------------------------------------------------------------------
def training_problems(cfg: RunConfig) -> list[Problem]:
    """The training problems of the run (``data.train``), capped by ``self_distill.max_problems``."""
    problems = load_sources(cfg.data.train, world=cfg.world)
    if not problems:
        raise ValueError("data.train is empty: self-distillation needs training problems")
    return problems[: cfg.self_distill.max_problems] if cfg.self_distill.max_problems else problems


def build_student_policy(cfg: RunConfig) -> Any:
    """The S1 sampling policy: ``self_distill.policy`` if set, else ``student.backend`` on S1."""
    from dualdistill.distill import model_path
    from dualdistill.policy import build_policy

    pcfg = cfg.self_distill.policy
    if pcfg is None:
        pcfg = PolicyConfig(backend=cfg.student.backend, model=model_path(cfg, MODEL), dtype=cfg.student.dtype,
                            max_concurrency=cfg.student.batch_size)
    elif pcfg.model is None:
        pcfg = pcfg.model_copy(update={"model": model_path(cfg, MODEL)})
    if pcfg.backend == "hf":
        return build_policy(pcfg, device=cfg.device)
    return build_policy(pcfg)


def _current_records(store: JsonlStore, ids: set[str], k: int, chash: str) -> dict[tuple[str, int], dict]:
    """The latest record per (problem, sample) of this config, for the wanted problems and K."""
    out: dict[tuple[str, int], dict] = {}
    for key, rec in store.latest().items():
        if not key.endswith(f"|{chash}"):
            continue
        pid, sample = rec["problem"]["id"], int(rec["sample"])
        if pid in ids and sample < k:
            out[(pid, sample)] = rec
    return out


def sample_student(
    cfg: RunConfig,
    policy: Any = None,
    problems: list[Problem] | None = None,
    progress: bool = True,
    *,
    chunk_size: int = 64,
) -> list[dict]:
    """Step 5: K graded samples per training problem from S1 with tools; resumable.

    Only (problem, sample) pairs without a successful record of this config are generated; records
    are appended chunk by chunk, so an interrupted run keeps what it finished. Returns the current
    sample records (problem order, then sample index) and rewrites the per-problem summary.
    ``policy``: a ready :class:`~dualdistill.policy.Policy` (default: built from the config and
    closed afterwards); ``problems``: default :func:`training_problems`."""
    from tqdm.auto import tqdm

    from dualdistill.grading import grade_many
    from dualdistill.rollout import RolloutItem, generate_trajectories, make_sandbox_pool

    sd = cfg.self_distill
    problems = training_problems(cfg) if problems is None else problems
    ids = [p.id for p in problems]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate problem ids in the self-distillation problems")
    chash = sample_config_hash(cfg)
    paths = RunPaths.of(cfg)
    store = JsonlStore(paths.sd_samples)
    cfg.save(paths.sd_samples.with_name("config.yaml"))
    done = {pk for pk, r in _current_records(store, set(ids), sd.k, chash).items() if r.get("status") == "ok"}
    todo = [(p, s) for p in problems for s in range(sd.k) if (p.id, s) not in done]
    log.info("self-distillation sampling: %d of %d samples missing", len(todo), len(problems) * sd.k)

    if todo:
        own_policy = policy is None
        policy = build_student_policy(cfg) if own_policy else policy
        pool = make_sandbox_pool(cfg.sandbox)
        bar = tqdm(total=len(todo), desc="S1 samples", disable=not progress)
        try:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                items = [
                    RolloutItem(problem=p, prompt=formatting.build_prompt(p.problem, code=True,
                                                                           style=cfg.student.prompt_style),
                                role="student", sample=s, context={})
                    for p, s in chunk
                ]
                trajs = generate_trajectories(
                    policy, items, budget=sd.budget, max_code_calls=sd.max_code_calls,
                    temperature=sd.temperature, sandbox_pool=pool, tools=True, seed=sd.seed,
                    progress=False, desc="S1 samples",
                )
                grades = grade_many([(t.completion, p.answer) for t, (p, _) in zip(trajs, chunk, strict=True)])
                for (p, s), traj, g in zip(chunk, trajs, grades, strict=True):
                    failed = traj.finish_reason == "error"
                    store.append({
                        "key": record_key(MODEL, p.id, s, chash),
                        "model": MODEL,
                        "benchmark": BENCHMARK,
                        "budget": sd.budget,
                        "problem": p.to_dict(),
                        "sample": s,
                        "trajectory": traj.to_dict(),
                        "correct": bool(g.correct) and not failed,
                        "grade": {"status": g.status, "pred": g.pred},
                        "status": "failed" if failed else "ok",
                        "config_hash": chash,
                    })
                bar.update(len(chunk))
        finally:
            bar.close()
            _close(pool)
            if own_policy:
                _close(policy)

    current = _current_records(store, set(ids), sd.k, chash)
    records = [current[(p.id, s)] for p in problems for s in range(sd.k) if (p.id, s) in current]
    write_problem_summary(cfg, records)
    return records


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()


def group_by_problem(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Sample records per problem id, in sample order."""
    out: dict[str, list[dict]] = {}
    for rec in records:
        out.setdefault(rec["problem"]["id"], []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: int(r["sample"]))
    return out


def _ok(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r.get("status", "ok") == "ok"]


def gbar(records: Iterable[dict]) -> float | None:
    """Mean correctness over the successful samples of one problem (None without any)."""
    ok = _ok(records)
    return sum(bool(r["correct"]) for r in ok) / len(ok) if ok else None


def gbar_by_problem(samples_by_problem: Mapping[str, list[dict]]) -> dict[str, float]:
    """ḡ per problem; problems without a successful sample are left out."""
    out = {}
    for pid, recs in samples_by_problem.items():
        g = gbar(recs)
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


def write_problem_summary(cfg: RunConfig, records: Iterable[dict]) -> Path:
    return write_jsonl(problem_summary_path(cfg), problem_summaries(records))


def gbar_histogram(gbars: Iterable[float]) -> dict[str, int]:
    """Counts per ḡ value (ḡ takes the values j/K), keys formatted ``"0.250"``, ascending."""
    counts = Counter(round(g, 6) for g in gbars)
    return {f"{g:.3f}": counts[g] for g in sorted(counts)}


# --- step 6: selection ---------------------------------------------------------------------------
def selection_counts(gbar_values: Iterable[float] | Mapping[str, float], beta1: float, beta2: float) -> dict[str, int]:
    """How many problems each rule selects: ``verify`` (ḡ<1 and ḡ>β1), ``correct`` (ḡ<1 and ḡ<β2),
    ``eligible`` (ḡ<1), ``solved`` (ḡ=1). The single definition of the β1/β2 rule."""
    values = list(gbar_values.values()) if isinstance(gbar_values, Mapping) else list(gbar_values)
    rules = [rules_for(g, beta1, beta2) for g in values]
    eligible = sum(g < 1 for g in values)
    return {
        "verify": sum("verify" in r for r in rules),
        "correct": sum("correct" in r for r in rules),
        "eligible": eligible,
        "solved": len(values) - eligible,
    }


def rules_for(g: float, beta1: float, beta2: float) -> list[str]:
    """Rules that fire for one problem with mean correctness ``g`` (strict inequalities)."""
    if g >= 1:
        return []
    return [r for r, fires in (("verify", g > beta1), ("correct", g < beta2)) if fires]


def as_segments(solution: Any) -> list[Segment]:
    """Segments of a solution given as a Trajectory, a trajectory dict, or a list of segments."""
    if isinstance(solution, Trajectory):
        return list(solution.segments)
    if isinstance(solution, Mapping):
        return [Segment.from_dict(s) for s in solution["segments"]]
    return [s if isinstance(s, Segment) else Segment.from_dict(s) for s in solution]


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
             g: float, mask: bool, sol_index: int, prompt_style: str = "r1") -> dict:
    prob = rec["problem"]
    segments = [*student, Segment("transition", transition), *solution]
    return {
        "key": record_key("t2", prob["id"], rule),
        "problem_id": prob["id"],
        "prompt": formatting.build_prompt(prob["problem"], code=True, style=prompt_style),
        "segments": [s.to_dict() for s in segments],
        "mask_until_first_transition": mask,
        "source": "t2",
        "rule": rule,
        "subset": prob.get("subset"),
        "family": prob.get("family"),
        "gbar": g,
        "student_sample": int(rec["sample"]),
        "teacher_solution": sol_index,
    }


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
) -> tuple[list[dict], dict]:
    """Step 6: T2 training examples from cached samples (pure; no sampling, no I/O).

    ``samples_by_problem``: problem id -> sample records (``problem``, ``sample``, ``trajectory``,
    ``correct``, ``status``). ``teacher_solutions``: problem id -> text-teacher solutions
    (Trajectory, trajectory dicts or segment lists), each ending in its one answer block.
    ``pick``: which student sample / teacher solution is used — ``random`` (seeded per problem and
    rule), ``shortest`` (fewest tokens), ``first``. ``mask_before_transition``: ``wrong_first``
    masks the student part of corrections only, ``always`` of both rules, ``never`` of none.

    Returns ``(examples, report)``; the report counts problems per rule and lists problems that
    would contribute but have no teacher solution (``no_teacher_solution``) or no usable student
    sample (``no_student_sample``), and problems without any successful sample (``no_samples``).
    """
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")
    if mask_before_transition not in MASK_MODES:
        raise ValueError(f"mask_before_transition must be one of {MASK_MODES}, got {mask_before_transition!r}")
    transitions = dict(formatting.DEFAULT_TRANSITIONS if transitions is None else transitions)
    sentence = {"verify": transitions["verify:code_to_text"], "correct": transitions["fix:code_to_text"]}
    mask = {
        "verify": mask_before_transition == "always",
        "correct": mask_before_transition in ("wrong_first", "always"),
    }
    gbars = gbar_by_problem(samples_by_problem)
    report: dict[str, Any] = {
        "beta1": beta1, "beta2": beta2, "pick": pick,
        **selection_counts(gbars, beta1, beta2),
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
                if bool(rec["correct"]) != want:
                    continue
                student = student_part(rec)
                if student is None:
                    report["unusable_student_samples"] += 1
                else:
                    candidates.append((rec, student))
            if not candidates:
                report["no_student_sample"][rule].append(pid)
                continue
            rec, student = _pick(candidates, pick, rng, lambda c: (_student_len(c[0]), int(c[0]["sample"])))
            sol_index, solution = _pick(solutions, pick, rng, lambda s: (len(formatting.render(s[1])), s[0]))
            ex = _example(rec, rule, student, sentence[rule], solution, g, mask[rule], sol_index, prompt_style)
            formatting.validate([Segment.from_dict(s) for s in ex["segments"]])
            examples.append(ex)
            report["examples"][rule] += 1
    report["n_examples"] = len(examples)
    report["n_no_teacher_solution"] = len(report["no_teacher_solution"])
    return examples, report


# --- text-teacher solutions (the feedback) -----------------------------------------------------------
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
    from dualdistill.backends.replay import r1_to_segments

    if not isinstance(text, str) or not text.strip():
        return None
    try:
        segs = r1_to_segments(text)
    except ValueError:
        return None
    return segs if formatting.is_valid(segs) else None


def teacher_solutions_from_problems(
    problems: Iterable[Problem], fields: Iterable[str] = ("r1_solution_1", "r1_solution_2", "r1_solution_3"),
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
                from dualdistill.grading import grade

                if not grade(formatting.render(segs), p.answer):
                    continue
            out.setdefault(p.id, []).append(segs)
    return out


def load_teacher_solutions(cfg: RunConfig, problems: list[Problem]) -> dict[str, list[list[Segment]]]:
    """Text-teacher solutions: the run's step-1 rollouts where present, else recorded replays in the
    problems' meta (fields of ``teachers.text.replay_fields``)."""
    out: dict[str, list[list[Segment]]] = {}
    if RunPaths.of(cfg).teacher_rollouts.exists():
        from dualdistill.rollouts import load_teacher_records

        out = teacher_solutions_from_records(load_teacher_records(cfg))
    missing = [p for p in problems if p.id not in out]
    fields = cfg.teachers.text.replay_fields
    if missing and any(f in p.meta for p in missing for f in fields):
        out.update(teacher_solutions_from_problems(missing, fields))
    return out


# --- step 7 and the whole stage -----------------------------------------------------------------------
def replay_examples(cfg: RunConfig, n_t2: int) -> list[dict]:
    """``round(replay_t1 · n_t2)`` T1 examples (a seeded sample without replacement, at most all of
    T1) mixed into S2's training data against forgetting; none when ``replay_t1`` is 0."""
    want = round(cfg.self_distill.replay_t1 * n_t2)
    if want == 0:
        return []
    path = RunPaths.of(cfg).t1
    if not path.is_file():
        raise FileNotFoundError(f"self_distill.replay_t1 = {cfg.self_distill.replay_t1} needs T1 at {path}: "
                                "run composition (stage 02) first")
    t1 = read_jsonl(path)
    picked = random.Random(f"replay|{cfg.self_distill.seed}").sample(t1, min(want, len(t1)))
    return [{**ex, "replay": True} for ex in picked]


def train_s2(cfg: RunConfig, examples: list[dict], *, progress: bool = True) -> dict:
    """SFT S1 on T2 (plus ``replay_t1`` T1 examples) → S2 (``self_distill.sft`` or ``sft``; work
    dir ``checkpoints/S2``, plain model ``models/S2``; a rerun with the same data and settings is a
    no-op). With an empty T2, S2 is a copy of S1 and the result carries a ``warning``."""
    from dualdistill.distill import model_path
    from dualdistill.sft import model_fingerprint, train_sft

    paths = RunPaths.of(cfg)
    base, out = Path(model_path(cfg, MODEL)), paths.model(OUT_MODEL)
    marker = out / COPY_MARKER
    if examples:
        if marker.exists():  # S2 was a copy of S1: train from scratch into a clean dir
            shutil.rmtree(out)
        sft = cfg.self_distill.sft or cfg.sft
        replay = replay_examples(cfg, len(examples))
        result = train_sft(examples + replay, base, paths.checkpoints(OUT_MODEL), sft, model_dir=out,
                           resume=True, device=cfg.device, progress=progress)
        return {**result, "t2_examples": len(examples), "replay_t1_examples": len(replay)}
    msg = f"T2 is empty: no problem passed the β1/β2 rules with a teacher solution; S2 is a copy of S1 ({base})"
    log.warning(msg)
    result: dict[str, Any] = {"copied_from": str(base), "base": model_fingerprint(base), "warning": msg,
                              "examples": 0}
    if marker.exists() and json.loads(marker.read_text()).get("base") == result["base"]:
        return {**result, "skipped": True}
    if not base.is_dir():
        raise FileNotFoundError(f"S1 not found at {base}: run teacher distillation (stage 03) first")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    marker.write_text(json.dumps(result, indent=2))
    return result


def select_from_cache(cfg: RunConfig, records: list[dict] | None = None,
                      problems: list[Problem] | None = None) -> tuple[list[dict], dict]:
    """Selection with the config's β1, β2, pick and transitions over the cached samples."""
    sd = cfg.self_distill
    problems = training_problems(cfg) if problems is None else problems
    if records is None:
        chash = sample_config_hash(cfg)
        current = _current_records(JsonlStore(RunPaths.of(cfg).sd_samples), {p.id for p in problems}, sd.k, chash)
        records = [current[(p.id, s)] for p in problems for s in range(sd.k) if (p.id, s) in current]
    return select_examples(
        group_by_problem(records), load_teacher_solutions(cfg, problems),
        beta1=sd.beta1, beta2=sd.beta2, pick=sd.pick, transitions=cfg.composition.transitions,
        seed=sd.seed, mask_before_transition=cfg.composition.mask_before_transition,
        prompt_style=cfg.student.prompt_style,
    )


def run_self_distillation(cfg: RunConfig, *, stage: str | None = None, policy: Any = None,
                          progress: bool = True) -> dict:
    """Steps 5–7: sample S1 (resumable) → select T2 → SFT S1 on T2 → S2. ``stage`` (``sample``,
    ``select``, ``train``) stops after that step. Returns (and saves) the stage summary: ḡ
    histogram, counts per rule, problems without a teacher solution, the SFT summary, warnings."""
    if stage not in (None, "sample", "select", "train"):
        raise ValueError(f"stage must be sample, select or train, got {stage!r}")
    sd = cfg.self_distill
    problems = training_problems(cfg)
    records = sample_student(cfg, policy=policy, problems=problems, progress=progress)
    gbars = gbar_by_problem(group_by_problem(records))
    summary: dict[str, Any] = {
        "n_problems": len(problems),
        "k": sd.k,
        "n_samples": len(records),
        "n_failed_samples": sum(r.get("status") != "ok" for r in records),
        "gbar_mean": sum(gbars.values()) / len(gbars) if gbars else None,
        "gbar_hist": gbar_histogram(gbars.values()),
        "counts": selection_counts(gbars, sd.beta1, sd.beta2),
        "beta1": sd.beta1,
        "beta2": sd.beta2,
        "warnings": [],
    }
    if stage != "sample":
        examples, report = select_from_cache(cfg, records, problems)
        paths = RunPaths.of(cfg)
        write_jsonl(paths.t2, examples)
        cfg.save(paths.t2.with_name("config.yaml"))
        selection_report_path(cfg).write_text(json.dumps(report, indent=2))
        summary.update(
            examples=report["examples"], n_examples=len(examples),
            no_teacher_solution=report["no_teacher_solution"],
            n_no_teacher_solution=report["n_no_teacher_solution"],
            no_student_sample=report["no_student_sample"],
        )
        if report["no_teacher_solution"]:
            summary["warnings"].append(
                f"{report['n_no_teacher_solution']} selected problems have no text-teacher solution")
        if stage != "select":
            sft = train_s2(cfg, examples, progress=progress)
            summary["sft"] = sft
            summary["s2"] = str(paths.model(OUT_MODEL))
            if "warning" in sft:
                summary["warnings"].append(sft["warning"])
    path = stage_summary_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dualdistill.self_distill", description=__doc__.split("\n")[0])
    parser.add_argument("params", help="params YAML, e.g. params/smoke.yaml")
    parser.add_argument("overrides", nargs="*", help="section.field=value (value read as YAML)")
    parser.add_argument("--stage", choices=["sample", "select", "train"], help="stop after this step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.params, dict(parse_override(o) for o in args.overrides))
    summary = run_self_distillation(cfg, stage=args.stage)
    json.dump(summary, sys.stdout, indent=2, default=str)
    print()
    return summary


if __name__ == "__main__":
    main()
