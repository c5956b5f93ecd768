"""Stage 05 — evaluation: every model on every benchmark and budget, with the tool loop; the summary.

    python -m dualdistill.stages.evaluation params/smoke.yaml [--set eval.samples=1]
    dualdistill evaluate params/smoke.yaml                 # the same call: run(cfg)

For every model of ``cfg.eval.models`` (``S0``, ``S1``, ``S2``, baselines such as ``text_only``,
or an :class:`~dualdistill.config.EvalModel` with its own policy, e.g. an OpenAI-compatible
endpoint), every benchmark of ``cfg.data.test`` and every budget of ``cfg.eval.budgets``,
``cfg.eval.samples`` trajectories per problem are sampled, graded and recorded by
``rollout.recorder.sample_and_record`` (the routine self-distillation uses too) in
``outputs/<run>/eval/<model>.jsonl``. It is resumable: a record's key is
``record_key(model, benchmark, budget, problem id, sample, hash)`` where the hash
(:func:`eval_hash`) covers what a sample depends on (budget tokens, temperature, tools, code-call
cap, seed, sandbox limits, benchmark version, prompt style, the model's policy config and the
identity of its weights); a rerun generates only the samples without a successful record. The number
of samples and the problem limit are not in the hash: raising them adds samples and keeps the old ones.

Every model's checkpoint is checked before any sampling starts (a missing one names the stage that
makes it). The summary rows (``report/summary.json``, key ``"eval"``) are recomputed from all
evaluation records by :func:`write_summary` (metrics in ``dualdistill.report.metrics``); stage 06 reads them.
A row with failed samples says so (``n_failed``, ``complete: false``), and the stage then ends with
:class:`~dualdistill.common.failures.IncompleteStage` (beyond ``eval.max_failed_fraction``): the command
exits non-zero, and rerunning it retries the failed samples.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from dualdistill.artifacts.current import eval_records
from dualdistill.artifacts.ledger import record_ran
from dualdistill.artifacts.paths import RunPaths, require_model
from dualdistill.common.failures import check_complete
from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import JsonlStore, read_json, record_key, write_json
from dualdistill.config import EvalModel, PolicyConfig, RunConfig, SamplingSettings, SandboxConfig
from dualdistill.data import benchmarks as bm
from dualdistill.data.loaders import load_source
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.report.metrics import default_comparisons, latest_per_sample, paired_rows, summarize
from dualdistill.rollout.official_loop import OFFICIAL_LOOP_VERSION
from dualdistill.rollout.policy import Policy
from dualdistill.rollout.recorder import (
    SampleJob,
    SampleSettings,
    build_model_policy,
    context_needed,
    sample_and_record,
    sampling_record,
)
from dualdistill.sandbox.pool import SandboxPool, make_sandbox_pool
from dualdistill.stages.entry import stage
from dualdistill.training.stamp import model_fingerprint
from dualdistill.training.student import load_student_tokenizer

log = logging.getLogger(__name__)

_RUNTIME_POLICY_FIELDS = {"max_concurrency", "max_retries", "request_timeout", "api_key_env"}


# --- keys ----------------------------------------------------------------------------------------
def eval_hash(pcfg: PolicyConfig | None, *, budget: int, sampling: dict[str, Any], tools: bool, max_code_calls: int,
              benchmark_version: str = "custom", sandbox: SandboxConfig | None = None,
              prompt_style: str = "r1") -> str:
    """Hash of what one evaluation sample depends on: the sampling settings and backend, budget,
    tools, cap, benchmark version, prompt, sandbox limits, and of the policy everything but runtime
    knobs (concurrency, retries, timeouts, the key's variable), plus the weights' identity."""
    policy = None
    if pcfg is not None:
        policy = {k: v for k, v in pcfg.model_dump(mode="json").items() if k not in _RUNTIME_POLICY_FIELDS}
        policy["fingerprint"] = model_fingerprint(pcfg.model) if pcfg.model else None
    limits = None if sandbox is None else {"timeout": sandbox.timeout, "memory_mb": sandbox.memory_mb,
                                           "max_output_chars": sandbox.max_output_chars}
    loop = {"loop": OFFICIAL_LOOP_VERSION} if formatting.loop_mode(prompt_style) == "official" else {}
    return stable_hash({"budget": budget, "sampling": sampling, "tools": tools,
                        "max_code_calls": max_code_calls, "benchmark_version": benchmark_version, "policy": policy,
                        "sandbox": limits, "prompt_style": prompt_style, **loop})


# --- one model on one benchmark at one budget ---------------------------------------------------
def evaluate_model(
    policy: Policy | Callable[[], Policy],
    problems: list[Problem],
    *,
    model_name: str,
    benchmark: str,
    budget_name: str,
    budget: int,
    samples: int,
    sampling: SamplingSettings,
    backend: str,
    seed: int,
    tools: bool,
    sandbox_pool: SandboxPool | None,
    store: JsonlStore,
    progress: bool = True,
    policy_config: PolicyConfig | None = None,
    sandbox: SandboxConfig | None = None,
    benchmark_version: str | None = None,
    prompt_style: str = "r1",
) -> list[dict[str, Any]]:
    """Sample, grade and record ``samples`` trajectories per problem; resumable, each record appended
    as its trajectory ends. ``policy`` may be a function that builds it when something is to be sampled.

    Returns the current records of these problems and samples (old and new), in problem order then
    sample order. ``policy_config`` and ``sandbox`` go into the key hash (:func:`eval_hash`);
    ``benchmark_version`` defaults to the registry's version of ``benchmark``."""
    ids = [p.id for p in problems]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{benchmark}: duplicate problem id {dup!r}")
    version = benchmark_version or bm.benchmark_version(benchmark)
    chash = eval_hash(policy_config, budget=budget, sampling=sampling_record(backend, sampling, seed), tools=tools,
                      max_code_calls=sampling.max_code_calls, benchmark_version=version, sandbox=sandbox,
                      prompt_style=prompt_style)
    mode = formatting.loop_mode(prompt_style)
    jobs = [SampleJob(record_key(model_name, benchmark, budget_name, p.id, s, chash), p, s,
                      formatting.sampling_prompt(p.text_for(mode), code=tools, style=prompt_style))
            for p in problems for s in range(samples)]
    settings = SampleSettings(model=model_name, benchmark=benchmark, budget_name=budget_name, budget=budget,
                              sampling=sampling, backend=backend, seed=seed, tools=tools, config_hash=chash,
                              benchmark_version=version, call_cap=formatting.call_cap_style(prompt_style), mode=mode)
    sample_and_record(policy, jobs, store, settings, sandbox_pool=sandbox_pool, show_progress=progress,
                      desc=f"{model_name}/{benchmark}/{budget_name}")
    latest = store.latest()
    return [latest[j.key] for j in jobs if j.key in latest]


# --- the stage -----------------------------------------------------------------------------------
class OnDemand:
    """A model's policy, built the first time a sample is missing (so a rerun with every sample recorded
    starts no engine or server)."""

    def __init__(self, build: Callable[[], Policy]) -> None:
        self.build = build
        self.policy: Policy | None = None

    def __call__(self) -> Policy:
        if self.policy is None:
            self.policy = self.build()
        return self.policy


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
    with ``cfg.student.backend`` (a missing checkpoint names the stage that makes it)."""
    if model.policy is not None:
        return model.policy
    return PolicyConfig(backend=cfg.student.backend, model=require_model(cfg, model.name), dtype=cfg.student.dtype,
                        max_concurrency=cfg.student.batch_size, extra=cfg.student.extra)


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


@stage("05")
def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stage 05: evaluate every model on every benchmark and budget; write the summary.

    Returns ``{"models", "benchmarks", "budgets", "n_new", "n_records", "records": {model: path},
    "summary": path, "accuracy": {model: {benchmark: {budget: acc}}}, "failed": n}``."""
    paths = RunPaths.of(cfg)
    models = eval_models(cfg)
    policies = {m.name: model_policy_config(cfg, m) for m in models}  # fail fast on a missing model
    benchmarks = load_benchmarks(cfg)
    ev = cfg.eval
    cfg.save(paths.eval_dir / "config.yaml")
    pool = make_sandbox_pool(cfg.sandbox) if any(m.tools for m in models) and ev.max_code_calls > 0 else None
    style = cfg.student.prompt_style
    tokenizer = load_student_tokenizer(cfg, local_only=True)
    prompts = [formatting.build_prompt(p.problem, code=True, style=style) for ps in benchmarks.values() for p in ps]
    need = context_needed(prompts, max(ev.budgets.values()), tokenizer)
    n_new = 0
    try:
        for m in models:
            store = JsonlStore(paths.eval_records(m.name))
            before = len(store.read())
            pcfg = policies[m.name]
            policy = OnDemand(partial(build_model_policy, pcfg, device=cfg.device, seed=ev.seed, max_context=need))
            try:
                for bench, problems in benchmarks.items():
                    for budget_name, budget in ev.budgets.items():
                        evaluate_model(
                            policy, problems, model_name=m.name, benchmark=bench, budget_name=budget_name,
                            budget=budget, samples=m.samples or ev.samples, sampling=ev.sampling(),
                            backend=pcfg.backend, seed=ev.seed, tools=m.tools, sandbox_pool=pool, store=store,
                            progress=progress, policy_config=pcfg, sandbox=cfg.sandbox, prompt_style=style,
                        )
            finally:
                if policy.policy is not None:  # it ran: the ledger says on what
                    try:
                        record_ran(cfg, "05", f"eval:{m.name}",
                                   {**policy.policy.describe(), "trajectories": len(store.read()) - before})
                    finally:
                        policy.policy.close()
            n_new += len(store.read()) - before
    finally:
        if pool is not None:
            pool.close()
    records = eval_records(cfg)
    summary = write_summary(cfg, records)
    rows = [r for r in summary["eval"] if r["subset"] == "all"]
    failed = [r for r in latest_per_sample(records) if r.get("status") != "ok"]
    check_complete("05", "samples", n_failed=sum(r["n_failed"] for r in rows),
                   n_total=sum(r["n_samples"] + r["n_failed"] for r in rows),
                   first_error=failed[0].get("error") if failed else None, max_failed_fraction=ev.max_failed_fraction)
    paired = {f"{r['model']}-{r['against']}/{r['benchmark']}/{r['budget']}": {"delta": r["delta"], "se": r["se"]}
              for r in summary["paired"] if r["subset"] == "all" and r["metric"] == "accuracy"}
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
        "tool_use_rate": {f"{r['model']}/{r['benchmark']}/{r['budget']}": r["tool_use_rate"] for r in rows},
        "paired_accuracy": paired,
    }


# --- summary -------------------------------------------------------------------------------------
def write_summary(cfg: RunConfig, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recompute the ``"eval"`` rows of ``report/summary.json`` from the records and write them, with
    the ``"paired"`` rows (S2 − S1 and S1 − every other model, per subset, with the standard error of
    the per-problem differences: ``metrics.paired_rows``), keeping every other top-level key. Returns
    the whole summary."""
    records = eval_records(cfg) if records is None else records
    path = RunPaths.of(cfg).summary
    data: dict[str, Any] = read_json(path) if Path(path).is_file() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    data["eval"] = summarize(records)
    models = list(dict.fromkeys(str(r.get("model")) for r in records))
    data["paired"] = paired_rows(records, default_comparisons(models))
    write_json(path, data)
    return data


if __name__ == "__main__":
    from dualdistill.stages.entry import main

    raise SystemExit(main("05"))
