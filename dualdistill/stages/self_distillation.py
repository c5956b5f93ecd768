"""Stage 04 — self-distillation (Algorithm 1, steps 5–7): sample S1, select T2 with β1/β2, SFT S1 on T2 → S2.

    python -m dualdistill.stages.self_distillation params/smoke.yaml [--set self_distill.beta2=0.8]
    dualdistill self-distill params/smoke.yaml             # the same call: run(cfg)

Step 5 (:func:`sample_student`): K trajectories per training problem from S1 with tools, graded
(``rollout.recorder.sample_and_record``). Samples are resumable records (``self_distill/samples.jsonl``);
a rerun generates only the missing ones, and the per-problem summary beside them
(``self_distill/problems.jsonl``) is recomputed from the current samples (``artifacts.
self_distill_samples``: this config, the first K, the current problem set). Changing K, β1, β2 or the
pick rule never resamples.

Step 6: :mod:`dualdistill.algorithm.selection` (pure: ḡ, the rules, the examples). Step 7
(:func:`train_s2`): SFT S1 on T2 (plus ``replay_t1`` T1 examples) → S2.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

from dualdistill.algorithm.selection import (
    counts_by_grader,
    gbar_by_problem,
    gbar_histogram,
    group_by_problem,
    problem_summaries,
    select_examples,
    selection_counts,
    short_problems,
    teacher_solutions_from_problems,
    teacher_solutions_from_records,
)
from dualdistill.artifacts.current import self_distill_problems, self_distill_samples, t1_examples, teacher_records
from dualdistill.artifacts.identity import samples_hash
from dualdistill.artifacts.ledger import record_ran
from dualdistill.artifacts.paths import RunPaths, require_model
from dualdistill.common.failures import check_complete
from dualdistill.common.store import JsonlStore, read_json, record_key, write_json, write_jsonl
from dualdistill.config import PolicyConfig, RunConfig
from dualdistill.data.official_data import export_official
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import Policy
from dualdistill.rollout.recorder import (
    SampleJob,
    SampleSettings,
    build_model_policy,
    context_needed,
    pending,
    sample_and_record,
)
from dualdistill.sandbox.pool import make_sandbox_pool
from dualdistill.stages.entry import stage
from dualdistill.training.sft import ran_info, train_sft
from dualdistill.training.stamp import model_fingerprint
from dualdistill.training.student import load_student_tokenizer

log = logging.getLogger(__name__)

MODEL = "S1"  # the sampled model
OUT_MODEL = "S2"  # the trained model
BENCHMARK = "train"  # the ``benchmark`` field of self-distillation sample records
BUDGET_NAME = "sd"  # their ``budget`` field (the tokens are in ``budget_tokens``)
COPY_MARKER = "copied_from_s1.json"  # in models/S2 when T2 was empty


# --- step 5: sampling --------------------------------------------------------------------------
def student_policy_config(cfg: RunConfig) -> PolicyConfig:
    """The S1 sampling policy's config: ``self_distill.policy`` if set, else ``student.backend`` on S1
    (with ``student.extra``, e.g. vLLM engine arguments)."""
    pcfg = cfg.self_distill.policy
    if pcfg is None:
        return PolicyConfig(backend=cfg.student.backend, model=require_model(cfg, MODEL), dtype=cfg.student.dtype,
                            max_concurrency=cfg.student.batch_size, extra=cfg.student.extra)
    if pcfg.model is None:
        return pcfg.model_copy(update={"model": require_model(cfg, MODEL)})
    return pcfg


def sampling_backend(cfg: RunConfig) -> str:
    """The backend S1 is sampled with (step 5): written into every sample record."""
    sd = cfg.self_distill
    return sd.policy.backend if sd.policy is not None else cfg.student.backend


def sample_student(cfg: RunConfig, policy: Policy | None = None, problems: list[Problem] | None = None,
                   progress: bool = True, *, stats: dict | None = None) -> list[dict]:
    """Step 5: K graded samples per training problem from S1 with tools; resumable.

    Returns the current sample records (problem order, then sample index) and rewrites the
    per-problem summary. ``policy``: a ready policy (default: built from the config and closed
    afterwards); ``problems``: default ``artifacts.self_distill_problems``; ``stats``, a dict, gets
    ``drawn`` (samples drawn by this call) and ``reused`` (found in the cache)."""
    sd = cfg.self_distill
    problems = self_distill_problems(cfg) if problems is None else problems
    ids = [p.id for p in problems]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate problem ids in the self-distillation problems")
    chash = samples_hash(cfg)
    paths = RunPaths.of(cfg)
    store = JsonlStore(paths.sd_samples)
    style = cfg.student.prompt_style
    mode = formatting.loop_mode(style)
    jobs = [SampleJob(record_key(MODEL, p.id, s, chash), p, s,
                      formatting.sampling_prompt(p.text_for(mode), code=True, style=style))
            for p in problems for s in range(sd.k)]
    settings = SampleSettings(model=MODEL, benchmark=BENCHMARK, budget_name=BUDGET_NAME, budget=sd.budget,
                              sampling=sd.sampling(), backend=sampling_backend(cfg), seed=sd.seed, config_hash=chash,
                              role="student", call_cap=formatting.call_cap_style(style), mode=mode)
    todo = pending(jobs, store)
    log.info("self-distillation sampling: %d of %d samples missing", len(todo), len(jobs))
    if stats is not None:
        stats.update(drawn=len(todo), reused=len(jobs) - len(todo))
    if todo:
        own_policy = policy is None
        if own_policy:  # a missing S1 fails before any write
            need = context_needed([j.prompt for j in todo], sd.budget, load_student_tokenizer(cfg, local_only=True))
            policy = build_model_policy(student_policy_config(cfg), device=cfg.device, seed=sd.seed, max_context=need)
        cfg.save(paths.sd_samples.with_name("config.yaml"))
        pool = make_sandbox_pool(cfg.sandbox)
        written = 0
        try:
            written = sample_and_record(policy, todo, store, settings, sandbox_pool=pool, show_progress=progress,
                                        desc="S1 samples")
        finally:
            pool.close()
            try:
                record_ran(cfg, "04", f"sample:{MODEL}", {**policy.describe(), "trajectories": written})
            finally:
                if own_policy:
                    policy.close()
    records = self_distill_samples(cfg, problems)
    write_jsonl(paths.sd_problem_summary, problem_summaries(records))
    return records


# --- text-teacher solutions (the feedback) -------------------------------------------------------------
def load_teacher_solutions(cfg: RunConfig, problems: list[Problem]) -> dict[str, list]:
    """Text-teacher solutions of ``problems`` (and of no other problem): stage 01's rollouts where
    present, else recorded replays in the problems' meta (fields of ``teachers.text.replay_fields``)."""
    out: dict[str, list] = {}
    wanted = {p.id for p in problems}
    if RunPaths.of(cfg).teacher_rollouts.exists():
        out = {pid: sols for pid, sols in teacher_solutions_from_records(teacher_records(cfg)).items() if pid in wanted}
    missing = [p for p in problems if p.id not in out]
    fields = cfg.teachers.text.replay_fields
    if missing and any(f in p.meta for p in missing for f in fields):
        out.update(teacher_solutions_from_problems(missing, fields))
    return out


def select_from_cache(cfg: RunConfig, records: list[dict] | None = None,
                      problems: list[Problem] | None = None) -> tuple[list[dict], dict]:
    """Step 6 with the config's β1, β2, pick and transitions over the cached samples."""
    sd = cfg.self_distill
    problems = self_distill_problems(cfg) if problems is None else problems
    records = self_distill_samples(cfg, problems) if records is None else records
    groups = group_by_problem(records)
    if not sd.partial_gbar:
        short = set(short_problems(groups, sd.k))
        groups = {pid: recs for pid, recs in groups.items() if pid not in short}
    return select_examples(
        groups, load_teacher_solutions(cfg, problems),
        beta1=sd.beta1, beta2=sd.beta2, pick=sd.pick, transitions=cfg.composition.transitions,
        seed=sd.seed, mask_before_transition=cfg.composition.mask_before_transition,
        prompt_style=cfg.student.prompt_style, transition_style=cfg.composition.transition_style,
        grader=selection_grader(cfg),
    )


def selection_grader(cfg: RunConfig) -> str:
    """Whose verdicts make ḡ and pick the attempts: the official score in official mode (as the official
    selection did), the project's strict grader otherwise."""
    return "official" if formatting.loop_mode(cfg.student.prompt_style) == "official" else "strict"


# --- step 7 ------------------------------------------------------------------------------------------
def replay_examples(cfg: RunConfig, n_t2: int) -> list[dict]:
    """``round(replay_t1 · n_t2)`` T1 examples (a seeded sample without replacement, at most all of
    T1) mixed into S2's training data against forgetting; none when ``replay_t1`` is 0."""
    want = round(cfg.self_distill.replay_t1 * n_t2)
    if want == 0:
        return []
    t1 = t1_examples(cfg)
    picked = random.Random(f"replay|{cfg.self_distill.seed}").sample(t1, min(want, len(t1)))
    return [{**ex, "replay": True} for ex in picked]


def train_s2(cfg: RunConfig, examples: list[dict], *, progress: bool = True) -> dict:
    """SFT S1 on T2 (plus ``replay_t1`` T1 examples) → S2 (``self_distill.sft`` or ``sft``; work
    dir ``checkpoints/S2``, plain model ``models/S2``; a rerun with the same data and settings is a
    no-op). With an empty T2, S2 is a copy of S1 and the result carries a ``warning``."""
    paths = RunPaths.of(cfg)
    base, out = Path(require_model(cfg, MODEL)), paths.model(OUT_MODEL)
    marker = out / COPY_MARKER
    if examples:
        if marker.exists():  # S2 was a copy of S1: train from scratch into a clean dir
            shutil.rmtree(out)
        sft = cfg.self_distill.sft or cfg.sft
        replay = replay_examples(cfg, len(examples))
        result = train_sft(examples + replay, base, paths.checkpoints(OUT_MODEL), sft, model_dir=out,
                           resume=True, device=cfg.device, progress=progress, desc=f"SFT {OUT_MODEL}")
        if not result.get("skipped"):
            record_ran(cfg, "04", f"sft:{OUT_MODEL}", ran_info(result))
        return {**result, "t2_examples": len(examples), "replay_t1_examples": len(replay)}
    msg = f"T2 is empty: no problem passed the β1/β2 rules with a teacher solution; S2 is a copy of S1 ({base})"
    log.warning(msg)
    result: dict[str, Any] = {"copied_from": str(base), "base": model_fingerprint(base), "warning": msg,
                              "examples": 0}
    if marker.exists() and read_json(marker).get("base") == result["base"]:
        return {**result, "skipped": True}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    write_json(marker, result)
    return result


@stage("04")
def run(cfg: RunConfig, *, progress: bool = True) -> dict:
    """Stage 04: sample S1 (resumable) → select T2 → SFT S1 on T2 → S2. Returns the stage summary:
    ḡ histogram, counts per rule, problems without a teacher solution, the SFT summary, warnings."""
    return self_distill(cfg, progress=progress)


def self_distill(cfg: RunConfig, *, until: str | None = None, policy: Policy | None = None,
                 progress: bool = True) -> dict:
    """The work of :func:`run`; ``until`` (``sample``, ``select``) stops after that step, ``policy``
    replaces the S1 sampling policy (tests, a server already running)."""
    if until not in (None, "sample", "select"):
        raise ValueError(f"until must be sample or select, got {until!r}")
    sd = cfg.self_distill
    problems = self_distill_problems(cfg)
    drawn: dict[str, int] = {}
    records = sample_student(cfg, policy=policy, problems=problems, progress=progress, stats=drawn)
    failed = [r for r in records if r.get("status") != "ok"]
    check_complete("04", "samples of S1", n_failed=len(failed), n_total=len(records),
                   first_error=failed[0].get("error") if failed else None, max_failed_fraction=sd.max_failed_fraction)
    grader = selection_grader(cfg)
    groups = group_by_problem(records)
    gbars = gbar_by_problem(groups, grader)
    short = short_problems(groups, sd.k)
    summary: dict[str, Any] = {
        "n_problems": len(problems),
        "k": sd.k,
        "n_samples": len(records),
        "samples_drawn": drawn.get("drawn", 0),
        "n_failed_samples": len(failed),
        "short_problems": len(short),  # ḡ over fewer than k samples: left out of T2 unless partial_gbar
        "gbar_mean": sum(gbars.values()) / len(gbars) if gbars else None,
        "gbar_hist": gbar_histogram(gbars.values()),
        "counts": selection_counts(gbars, sd.beta1, sd.beta2),
        "grader": grader,
        "counts_by_grader": counts_by_grader(groups, sd.beta1, sd.beta2),
        "beta1": sd.beta1,
        "beta2": sd.beta2,
        "warnings": [],
    }
    if short:
        summary["warnings"].append(
            f"{len(short)} problems have fewer than k = {sd.k} samples (some failed): their ḡ rests on fewer; "
            + ("selected anyway (self_distill.partial_gbar)" if sd.partial_gbar else "left out of T2"))
    if until == "sample":
        return summary
    examples, report = select_from_cache(cfg, records, problems)
    paths = RunPaths.of(cfg)
    write_jsonl(paths.t2, examples)
    summary["official_export"] = export_official(examples, paths.t2_official)
    cfg.save(paths.t2.with_name("config.yaml"))
    write_json(paths.t2_selection, report)
    summary.update(
        examples=report["examples"], n_examples=len(examples),
        no_teacher_solution=report["no_teacher_solution"],
        n_no_teacher_solution=report["n_no_teacher_solution"],
        no_student_sample=report["no_student_sample"],
    )
    if report["no_teacher_solution"]:
        summary["warnings"].append(
            f"{report['n_no_teacher_solution']} selected problems have no text-teacher solution")
    if until == "select":
        return summary
    sft = train_s2(cfg, examples, progress=progress)
    summary["sft"] = sft
    summary["s2"] = str(paths.model(OUT_MODEL))
    if "warning" in sft:
        summary["warnings"].append(sft["warning"])
    return summary


# --- for notebook 04 ------------------------------------------------------------------------------
def status_lines(cfg: RunConfig, summary: dict) -> list[str]:
    """What :func:`run` did and what it reused, one line per step (notebook 04 shows them)."""
    paths = RunPaths.of(cfg)
    drawn = summary.get("samples_drawn", 0)
    lines = [f"step 5: {summary['n_samples']} samples of S1 ({summary['k']} per problem, {summary['n_problems']} "
             f"problems): {drawn} drawn now, {summary['n_samples'] - drawn} reused from {paths.sd_samples}"]
    if "n_examples" in summary:
        ex, counts = summary["examples"], summary.get("counts") or {}
        missing = summary.get("n_no_teacher_solution") or 0
        no_sample = sum(len(v) for v in (summary.get("no_student_sample") or {}).values())
        lines.append(f"step 6: at β1 = {summary['beta1']:g}, β2 = {summary['beta2']:g} the rules select "
                     f"{counts.get('problems_used', '?')} problems ({counts.get('examples', '?')} examples); "
                     f"{missing} of them have no text-teacher solution (stage 01's text teacher never solved them)"
                     + (f"; {no_sample} selected examples had no usable sample of S1" if no_sample else "")
                     + f", so T2 = {summary['n_examples']} examples (verify {ex.get('verify', 0)}, correct "
                     f"{ex.get('correct', 0)}) → {paths.t2}")
        both = summary.get("counts_by_grader")
        if both:
            lines.append(f"step 6: ḡ by the {summary.get('grader', 'strict')} grader; selected problems (verify / "
                         "correct) by grader: " + ", ".join(f"{g} {c['verify']} / {c['correct']}"
                                                              for g, c in both.items()))
    sft = summary.get("sft")
    if sft is not None:
        if "copied_from" in sft:
            lines.append(f"step 7: T2 is empty, S2 is a copy of S1 ({paths.model(OUT_MODEL)})")
        elif sft.get("skipped"):
            took = f" in {_seconds(sft['seconds'])}" if sft.get("seconds") is not None else ""
            lines.append(f"step 7: S2 already trained on this data with these settings (trained earlier{took}): "
                         f"reused, not retrained ({paths.model(OUT_MODEL)})")
        else:
            lines.append(f"step 7: S2 trained now: {sft.get('steps')} steps in {_seconds(sft.get('seconds', 0))} on "
                         f"{sft.get('t2_examples')} T2 + {sft.get('replay_t1_examples', 0)} replayed T1 examples "
                         f"→ {paths.model(OUT_MODEL)}")
    return lines


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


FAILED_STATUS = ("error", "timeout", "killed")


def _attempt(example: dict) -> list[dict]:
    """The student's part of a T2 example: its segments before the first transition."""
    segs = example.get("segments") or []
    cut = next((i for i, s in enumerate(segs) if s.get("kind") == "transition"), len(segs))
    return segs[:cut]


def _printed(segs: list[dict], answer: Any) -> bool:
    """Whether an executor output of ``segs`` shows ``answer`` as a number or word of its own."""
    if answer in (None, ""):
        return False
    pattern = re.compile(rf"(?<![\w.]){re.escape(str(answer).strip())}(?![\w.])")
    return any(s.get("kind") == "executor" and pattern.search(s.get("text", "")) for s in segs)


def _why(example: dict, sample: dict | None) -> tuple[int, str]:
    """(how well the example shows its rule, a sentence saying what S1's attempt did)."""
    segs, gold = _attempt(example), example.get("answer")
    codes = [s for s in segs if s.get("kind") in ("code", "executor")]
    failed = any((s.get("meta") or {}).get("status") in FAILED_STATUS for s in codes)
    ran = any(s.get("kind") == "code" for s in segs)
    printed = _printed(segs, gold)
    own = None if sample is None else sample.get("final_answer")
    graded = None if sample is None else bool(sample.get("correct"))
    answer = ("its final answer is removed here" if sample is None else
              f"it gave no final answer (graded {'right' if graded else 'wrong'})" if own is None else
              f"its own final answer {own!r} (removed here) was graded {'right' if graded else 'wrong'}")
    if example.get("rule") == "correct":
        if printed:
            return 0, f"S1's program printed the gold answer {gold} and {answer}: a mistake after the code"
        program = ("its program failed" if failed else "its program ran but did not print the gold answer"
                   if ran else "it reasoned in text only")
        score = (3 if failed else 2 if ran else 1) if graded is not True else 0
        return score, f"S1's attempt: {program}; {answer} (gold {gold})"
    program = "its program printed the gold answer" if printed else "it ran code" if ran else "it reasoned in text"
    score = (2 if printed and not failed else 1) if graded is not False else 0
    return score, f"S1's attempt: {program}; {answer} (gold {gold}); the text teacher checks it another way"


def showcase(examples: list[dict], samples: list[dict] | None = None) -> list[dict]:
    """One T2 example per rule, picked by what it shows, each with ``why`` (what S1's attempt did):
    a correction whose attempt really failed (graded wrong after a failed program, else a program
    that did not print the gold answer, else text); a verification of an attempt graded right whose
    program printed the gold answer. ``samples``: S1's sample records, to read the removed answer."""
    by_sample = {(r["problem"]["id"], int(r["sample"])): r for r in samples or []}
    out = []
    for rule in ("verify", "correct"):
        scored = []
        for ex in (e for e in examples if e.get("rule") == rule):
            score, why = _why(ex, by_sample.get((ex.get("problem_id"), ex.get("student_sample"))))
            scored.append((score, {**ex, "why": why}))
        if scored:
            out.append(max(scored, key=lambda pair: pair[0])[1])  # the first of the best
    return out


def with_text_solution(cfg: RunConfig) -> set[str]:
    """The self-distillation problems with a text-teacher solution: the only ones stage 04 can turn
    into T2 examples (notebook 04's explorer counts them)."""
    return set(load_teacher_solutions(cfg, self_distill_problems(cfg)))


if __name__ == "__main__":
    from dualdistill.stages.entry import main

    raise SystemExit(main("04"))
