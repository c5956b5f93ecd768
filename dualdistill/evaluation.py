"""Stage 05: evaluate models on the test benchmarks with the tool loop; write the run's summary.

    python -m dualdistill.evaluation params/smoke.yaml [section.field=value ...]

For every model of ``cfg.eval.models`` (``S0``, ``S1``, ``S2``, baselines such as ``text_only``,
or an :class:`~dualdistill.config.EvalModel` with its own policy, e.g. an OpenAI-compatible
endpoint), every benchmark of ``cfg.data.test`` and every budget of ``cfg.eval.budgets``,
``cfg.eval.samples`` trajectories per problem are sampled with ``rollout.generate_trajectories``
(the one tool loop), graded with ``grading.grade_many`` and appended as Sample records to
``outputs/<run>/eval/<model>.jsonl``. It is resumable: a record's key is
``record_key(model, benchmark, budget, problem id, sample, hash)`` where the hash covers what a
sample depends on (budget tokens, temperature, tools, code-call cap, seed, sandbox limits,
benchmark version, the model's policy config and a fingerprint of its weight files); a rerun
generates only the samples without a successful record. The number of samples and the problem
limit are not in the hash: raising them adds samples and keeps the old ones.

A model whose checkpoint does not exist is an error naming the model and the stage that makes it
(checked for all models before any sampling starts).

The summary (``report/summary.json``, key ``"eval"``) is recomputed from all evaluation records by
:func:`write_summary` (metrics in ``dualdistill.metrics``; other top-level keys are kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualdistill import benchmarks as bm
from dualdistill import formatting
from dualdistill.config import EvalModel, PolicyConfig, RunConfig
from dualdistill.metrics import summarize
from dualdistill.paths import RunPaths
from dualdistill.problems import Problem, load_source
from dualdistill.store import JsonlStore, read_jsonl, record_key
from dualdistill.trajectory import Trajectory

log = logging.getLogger(__name__)

# which stage writes a model's checkpoint (for the "missing model" error)
MAKERS = {
    "S0": "stage 03 (dualdistill prepare-student / notebooks/03_teacher_distillation_sft.ipynb)",
    "S1": "stage 03 (dualdistill distill / notebooks/03_teacher_distillation_sft.ipynb)",
    "S2": "stage 04 (dualdistill self-distill / notebooks/04_self_distillation.ipynb)",
}
BASELINE_MAKER = "stage 03 (baselines section; dualdistill distill / notebooks/03_teacher_distillation_sft.ipynb)"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_RUNTIME_POLICY_FIELDS = {"max_concurrency", "max_retries", "request_timeout", "api_key_env"}


class MissingModelError(FileNotFoundError):
    """A model listed in ``eval.models`` has no checkpoint yet."""


# --- keys ----------------------------------------------------------------------------------------
def sample_hash(*, budget: int, temperature: float, tools: bool, max_code_calls: int, seed: int,
                benchmark_version: str = "custom", extra: str = "") -> str:
    """Hash of the settings one evaluation sample depends on (``extra``: policy and sandbox)."""
    blob = json.dumps(
        {"budget": budget, "temperature": temperature, "tools": tools, "max_code_calls": max_code_calls,
         "seed": seed, "benchmark_version": benchmark_version, "extra": extra},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_fingerprint(path: str | Path | None) -> str:
    """Names, sizes and modification times of a local model dir's weight files ('' if not local),
    so a retrained checkpoint is evaluated again."""
    if not path or not Path(path).is_dir():
        return ""
    files = sorted(f for f in Path(path).iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def policy_hash(pcfg: PolicyConfig, sandbox: Any = None) -> str:
    """What of a policy (and the sandbox limits) can change a sample; runtime knobs are left out."""
    d = {k: v for k, v in pcfg.model_dump(mode="json").items() if k not in _RUNTIME_POLICY_FIELDS}
    d["fingerprint"] = model_fingerprint(pcfg.model)
    if sandbox is not None:
        d["sandbox"] = {"timeout": sandbox.timeout, "memory_mb": sandbox.memory_mb,
                        "max_output_chars": sandbox.max_output_chars}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# --- one model on one benchmark at one budget ---------------------------------------------------
def _grade(pairs: list[tuple[str, str]], workers: int) -> list[tuple[bool, str]]:
    """(correct, grading status) per (response, gold) pair, from ``grading.grade_many``."""
    from dualdistill.grading import grade_many

    return [(bool(r.correct), r.status) for r in grade_many(pairs, workers=workers)]


def sample_record(
    *,
    key: str,
    model: str,
    benchmark: str,
    budget_name: str,
    budget: int,
    problem: Problem,
    sample: int,
    trajectory: Trajectory,
    correct: bool,
    tools: bool = True,
    config_hash: str = "",
    benchmark_version: str = "custom",
    grade_status: str = "ok",
) -> dict[str, Any]:
    """A Sample record (docs/ARCHITECTURE.md) of one evaluation sample. A trajectory whose policy
    failed (finish reason ``error``) gets ``status = "failed"`` and ``correct = False``."""
    failed = trajectory.finish_reason == "error"
    return {
        "key": key,
        "model": model,
        "benchmark": benchmark,
        "benchmark_version": benchmark_version,
        "budget": budget_name,
        "budget_tokens": budget,
        "tools": tools,
        "problem": problem.to_dict(),
        "sample": sample,
        "trajectory": trajectory.to_dict(),
        "final_answer": trajectory.final_answer,
        "format_valid": trajectory.format_valid,
        "correct": bool(correct) and not failed,
        "grade_status": grade_status,  # grading.GradeResult.status: ok | no_answer | timeout | error
        "status": "failed" if failed else "ok",
        "error": trajectory.meta.get("error") if failed else None,
        "config_hash": config_hash,
    }


def evaluate_model(
    policy: Any,
    problems: list[Problem],
    *,
    model_name: str,
    benchmark: str,
    budget_name: str,
    budget: int,
    samples: int,
    temperature: float,
    tools: bool,
    max_code_calls: int,
    sandbox_pool: Any,
    store: JsonlStore,
    seed: int,
    progress: bool = True,
    config_hash: str = "",
    benchmark_version: str | None = None,
    grade_workers: int = 2,
    chunk_size: int = 256,
    prompt_style: str = "r1",
) -> list[dict[str, Any]]:
    """Sample, grade and record ``samples`` trajectories per problem; resumable.

    Returns the current records of these problems and samples (old and new), in problem order then
    sample order. ``config_hash`` (e.g. :func:`policy_hash`) goes into every key;
    ``benchmark_version`` defaults to the registry's version of ``benchmark``."""
    from tqdm.auto import tqdm

    from dualdistill.rollout import RolloutItem, generate_trajectories

    ids = [p.id for p in problems]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{benchmark}: duplicate problem id {dup!r}")
    version = benchmark_version or bm.benchmark_version(benchmark)
    chash = sample_hash(budget=budget, temperature=temperature, tools=tools, max_code_calls=max_code_calls,
                        seed=seed, benchmark_version=version,
                        extra=config_hash if prompt_style == "r1" else f"{config_hash}-{prompt_style}")

    def key(p: Problem, s: int) -> str:
        return record_key(model_name, benchmark, budget_name, p.id, s, chash)

    latest = store.latest()
    todo = [(p, s) for p in problems for s in range(samples) if latest.get(key(p, s), {}).get("status") != "ok"]
    desc = f"{model_name}/{benchmark}/{budget_name}"
    log.info("%s: %d of %d samples to generate", desc, len(todo), len(problems) * samples)
    bar = tqdm(total=len(todo), desc=desc, disable=not progress or not todo)
    try:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            items = [
                RolloutItem(problem=p, prompt=formatting.build_prompt(p.problem, code=tools, style=prompt_style),
                            role=model_name, sample=s)
                for p, s in chunk
            ]
            trajs = generate_trajectories(
                policy, items, budget=budget, max_code_calls=max_code_calls, temperature=temperature,
                sandbox_pool=sandbox_pool, tools=tools, seed=seed, progress=False, desc=desc,
                on_finish=lambda _i, _t: bar.update(1),
            )
            grades = _grade([(t.completion, p.answer) for t, (p, _) in zip(trajs, chunk, strict=True)],
                            grade_workers)
            for (p, s), traj, (ok, status) in zip(chunk, trajs, grades, strict=True):
                store.append(sample_record(
                    key=key(p, s), model=model_name, benchmark=benchmark, budget_name=budget_name, budget=budget,
                    problem=p, sample=s, trajectory=traj, correct=ok, tools=tools, config_hash=chash,
                    benchmark_version=version, grade_status=status,
                ))
    finally:
        bar.close()
    latest = store.latest()
    return [latest[key(p, s)] for p in problems for s in range(samples) if key(p, s) in latest]


# --- the stage -----------------------------------------------------------------------------------
def eval_models(cfg: RunConfig) -> list[EvalModel]:
    """``cfg.eval.models`` as EvalModels (a plain name takes ``cfg.eval.tools``)."""
    out = [m if isinstance(m, EvalModel) else EvalModel(name=m, tools=cfg.eval.tools) for m in cfg.eval.models]
    names = [m.name for m in out]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9._-]+", n)]
    if bad:
        raise ValueError(f"eval.models: names must be file-name safe ([A-Za-z0-9._-]+), got {bad}")
    if len(names) != len(set(names)):
        raise ValueError(f"eval.models has duplicate names: {names}")
    return out


def model_policy_config(cfg: RunConfig, model: EvalModel) -> PolicyConfig:
    """The policy of an evaluated model: its own, or the run's checkpoint of that name loaded
    with ``cfg.student.backend``. Raises :class:`MissingModelError` if the checkpoint is missing."""
    if model.policy is not None:
        return model.policy
    from dualdistill.distill import model_path

    path = str(model_path(cfg, model.name))
    remote = model.name == "S0" and cfg.student.model != "tiny"  # a hub id is resolved by the backend
    if not Path(path).exists() and not remote:
        maker = MAKERS.get(model.name) or (BASELINE_MAKER if model.name in cfg.baselines else "the stage that trains it")
        raise MissingModelError(
            f"eval.models: model {model.name!r} has no checkpoint at {path}; run {maker} first, "
            "or remove it from eval.models"
        )
    return PolicyConfig(backend=cfg.student.backend, model=path, dtype=cfg.student.dtype,
                        max_concurrency=cfg.student.batch_size)


def load_benchmarks(cfg: RunConfig) -> dict[str, list[Problem]]:
    """Problems per benchmark of ``cfg.data.test`` (``cfg.eval.limit`` applied)."""
    if not cfg.data.test:
        raise ValueError("data.test is empty: no benchmark to evaluate on")
    out: dict[str, list[Problem]] = {}
    for src in cfg.data.test:
        name = bm.benchmark_name(src)
        if name in out:
            raise ValueError(f"data.test: two sources are named {name!r}; give them distinct names")
        limit = cfg.eval.limit
        if limit and (src.limit is None or src.limit > limit):
            src = src.model_copy(update={"limit": limit})
        out[name] = load_source(src, world=cfg.world)
        if not out[name]:
            raise ValueError(f"data.test: benchmark {name!r} has no problems")
    return out


def run_evaluation(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate every model on every benchmark and budget; write the summary.

    Returns ``{"models", "benchmarks", "budgets", "n_new", "n_records", "records": {model: path},
    "summary": path, "accuracy": {model: {benchmark: {budget: acc}}}, "failed": n}``."""
    from dualdistill.policy import build_policy
    from dualdistill.rollout import make_sandbox_pool

    paths = RunPaths.of(cfg)
    models = eval_models(cfg)
    policies = {m.name: model_policy_config(cfg, m) for m in models}  # fail fast on a missing model
    benchmarks = load_benchmarks(cfg)
    ev = cfg.eval
    cfg.save(paths.root / "eval" / "config.yaml")
    pool = make_sandbox_pool(cfg.sandbox) if any(m.tools for m in models) and ev.max_code_calls > 0 else None
    n_new = 0
    try:
        for m in models:
            store = JsonlStore(paths.eval_records(m.name))
            before = len(store.read())
            policy = build_policy(policies[m.name])
            try:
                for bench, problems in benchmarks.items():
                    for budget_name, budget in ev.budgets.items():
                        evaluate_model(
                            policy, problems, model_name=m.name, benchmark=bench, budget_name=budget_name,
                            budget=budget, samples=ev.samples, temperature=ev.temperature, tools=m.tools,
                            max_code_calls=ev.max_code_calls, sandbox_pool=pool, store=store, seed=ev.seed,
                            progress=progress, config_hash=policy_hash(policies[m.name], cfg.sandbox),
                            grade_workers=cfg.sandbox.workers, prompt_style=cfg.student.prompt_style,
                        )
            finally:
                close = getattr(policy, "close", None)
                if callable(close):
                    close()
            n_new += len(store.read()) - before
    finally:
        if pool is not None:
            pool.close()
    summary = write_summary(cfg)
    rows = [r for r in summary["eval"] if r["subset"] == "all"]
    accuracy: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in rows:
        accuracy.setdefault(r["model"], {}).setdefault(r["benchmark"], {})[r["budget"]] = r["accuracy"]
    return {
        "models": [m.name for m in models],
        "benchmarks": {b: len(p) for b, p in benchmarks.items()},
        "budgets": dict(ev.budgets),
        "n_new": n_new,
        "n_records": sum(r["n_samples"] + r["n_failed"] for r in rows),
        "failed": sum(r["n_failed"] for r in rows),
        "records": {m.name: str(paths.eval_records(m.name)) for m in models},
        "summary": str(paths.summary),
        "accuracy": accuracy,
    }


# --- summary -------------------------------------------------------------------------------------
def load_eval_records(cfg: RunConfig, models: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """All Sample records under ``outputs/<run>/eval/`` (or of the named models)."""
    eval_dir = RunPaths.of(cfg).root / "eval"
    files = [RunPaths.of(cfg).eval_records(m) for m in models] if models else sorted(eval_dir.glob("*.jsonl"))
    return [rec for f in files if f.is_file() for rec in read_jsonl(f)]


def write_summary(cfg: RunConfig, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recompute the ``"eval"`` rows of ``report/summary.json`` from the records and write them,
    keeping every other top-level key. Returns the whole summary."""
    records = load_eval_records(cfg) if records is None else records
    rows = summarize(records)
    path = RunPaths.of(cfg).summary
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}); fix or delete it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object at the top level")
    data["eval"] = rows
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dualdistill.config import load_config, parse_override

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit("usage: python -m dualdistill.evaluation PARAMS [section.field=value ...]")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(argv[0], dict(parse_override(a) for a in argv[1:]))
    out = run_evaluation(cfg)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
