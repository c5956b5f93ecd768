"""Evaluation: replayed traces on the shared AIME 2025 set grade exactly as built, resume, retry
failures, the whole stage with its summary, missing checkpoints, and the benchmark registry."""

from __future__ import annotations

import json

import pytest

from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import MissingStageError, RunPaths
from dualdistill.common.failures import IncompleteStage
from dualdistill.common.store import JsonlStore
from dualdistill.config import DataSource, EvalModel, PolicyConfig, SamplingSettings, config_from_dict, load_config
from dualdistill.data import benchmarks
from dualdistill.data.loaders import load_source
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.report import paper_results
from dualdistill.report.metrics import summarize
from dualdistill.rollout.backends.replay import ReplayPolicy
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy
from dualdistill.rollout.recorder import sampling_record
from dualdistill.stages import evaluation
from dualdistill.training.stamp import SFT_STAMP, model_fingerprint

from .conftest import SHARED_FILES


# --- helpers --------------------------------------------------------------------------------------
def trace(answer: str) -> str:
    return f"<think>\nLet me work this out carefully.\n</think>\nThe answer is \\boxed{{{answer}}}."


WRONG = "100000"  # no AIME answer (all are below 1000 or in degrees)


def right_a(i: int) -> bool:  # replay field "a" (sample 0) is right on every third problem
    return i % 3 == 0


def right_b(i: int) -> bool:  # replay field "b" (sample 1) is right on even problems
    return i % 2 == 0


def write_replay(path, problems: list[Problem], *, skip: set[str] = frozenset()) -> str:
    with open(path, "w") as f:
        for i, p in enumerate(problems):
            if p.id in skip:
                continue
            wrong = WRONG
            f.write(json.dumps({"id": p.id, "a": trace(p.answer if right_a(i) else wrong),
                                "b": trace(p.answer if right_b(i) else wrong)}) + "\n")
    return str(path)


class Spy(Policy):
    """Counts the (problem, sample) pairs a policy is asked to generate."""

    name = "spy"

    def __init__(self, inner: Policy) -> None:
        self.inner, self.asked = inner, []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.asked += [(r.context["problem"].id, r.context["sample"]) for r in requests]
        return self.inner.generate(requests)


@pytest.fixture(scope="module")
def aime(shared_data) -> list[Problem]:
    problems = load_source(DataSource(kind="dualdistill", name="aime2025", path=str(shared_data / "test/aime2025.jsonl")))
    assert len(problems) == 30
    return problems


@pytest.fixture(scope="module")
def pool():
    from dualdistill.config import SandboxConfig
    from dualdistill.sandbox.pool import make_sandbox_pool

    p = make_sandbox_pool(SandboxConfig(workers=2))
    yield p
    p.close()


def evaluate(policy, problems, store, pool, *, temperature=0.6, **kw):
    args = dict(model_name="replayer", benchmark="aime2025", budget_name="S", budget=4096, samples=2,
                sampling=SamplingSettings(temperature=temperature, max_code_calls=4), backend="replay", seed=0,
                tools=True, sandbox_pool=pool, store=store, progress=False)
    args.update(kw)
    return evaluation.evaluate_model(policy, problems, **args)


# --- evaluate_model -------------------------------------------------------------------------------
def test_replay_on_aime2025_grades_exactly_as_built(tmp_path, aime, pool):
    cfg = PolicyConfig(backend="replay", replay_path=write_replay(tmp_path / "r.jsonl", aime), replay_fields=["a", "b"])
    store = JsonlStore(tmp_path / "eval.jsonl")
    records = evaluate(ReplayPolicy(cfg), aime, store, pool)
    assert len(records) == 60 and [r["sample"] for r in records[:2]] == [0, 1]
    for i, p in enumerate(aime):
        r0, r1 = records[2 * i], records[2 * i + 1]
        assert r0["problem"]["id"] == p.id and r0["status"] == "ok"
        assert (r0["correct"], r1["correct"]) == (right_a(i), right_b(i)), p.id
        assert r0["final_answer"] == (p.answer if right_a(i) else WRONG)
        assert r0["format_valid"] and r0["trajectory"]["n_code_calls"] == 0
    row = summarize(records)[0]
    n_a, n_b = sum(map(right_a, range(30))), sum(map(right_b, range(30)))  # 10, 15
    assert row["n_problems"] == 30 and row["n_samples"] == 60
    assert row["accuracy"] == pytest.approx((n_a + n_b) / 60)
    both_wrong = sum(not right_a(i) and not right_b(i) for i in range(30))
    assert row["pass@2"] == pytest.approx((30 - both_wrong) / 30)
    assert row["maj@2"] == pytest.approx(n_a / 30)  # 1-1 ties go to sample 0
    assert row["tool_use_rate"] == 0 and row["format_valid_rate"] == 1.0


def test_resume_generates_only_missing_samples(tmp_path, aime, pool):
    problems = aime[:6]
    cfg = PolicyConfig(backend="replay", replay_path=write_replay(tmp_path / "r.jsonl", problems), replay_fields=["a", "b"])
    store = JsonlStore(tmp_path / "eval.jsonl")
    first = evaluate(ReplayPolicy(cfg), problems, store, pool)
    lines = store.path.read_text().splitlines(keepends=True)
    # a crash: the last two records never made it, and a torn line was left behind
    store.path.write_text("".join(lines[:-2]) + lines[-2][:40])
    spy = Spy(ReplayPolicy(cfg))
    again = evaluate(spy, problems, JsonlStore(store.path), pool)
    assert sorted(set(spy.asked)) == [(problems[5].id, 0), (problems[5].id, 1)]
    assert [r["correct"] for r in again] == [r["correct"] for r in first]
    spy = Spy(ReplayPolicy(cfg))
    assert len(evaluate(spy, problems, JsonlStore(store.path), pool, samples=3)) == 18  # more samples: only new ones
    assert {s for _, s in spy.asked} == {2}
    spy = Spy(ReplayPolicy(cfg))
    evaluate(spy, problems, JsonlStore(store.path), pool, temperature=0.0)  # another config: all new keys
    assert len(set(spy.asked)) == 12


def test_failed_samples_are_recorded_then_retried(tmp_path, aime, pool):
    problems = aime[:3]
    path = tmp_path / "r.jsonl"
    cfg = PolicyConfig(backend="replay", replay_path=write_replay(path, problems, skip={problems[1].id}),
                       replay_fields=["a", "b"])
    store = JsonlStore(tmp_path / "eval.jsonl")
    records = evaluate(ReplayPolicy(cfg), problems, store, pool)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2 and all(not r["correct"] and "no recorded trace" in r["error"] for r in failed)
    assert summarize(records)[0]["n_failed"] == 2
    write_replay(path, problems)  # the traces appear: a rerun retries only the failures
    spy = Spy(ReplayPolicy(cfg))
    records = evaluate(spy, problems, JsonlStore(store.path), pool)
    assert {pid for pid, _ in spy.asked} == {problems[1].id}
    assert all(r["status"] == "ok" for r in records)
    row = summarize(store.read())[0]  # the old failed records are superseded
    assert row["n_failed"] == 0 and row["n_samples"] == 6


class CodeThenAnswer(Policy):
    """Writes one code block printing 6*7, then answers with what the executor printed."""

    name = "code_then_answer"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for req in requests:
            done = req.context["completion"]
            if "<executor>" not in done:
                text = "I will compute it.\n</think>\n<code>\nprint(6 * 7)\n</code>"
            else:
                seen = done.rsplit("<executor>\n", 1)[1].split("\n", 1)[0]
                text = f"<think>\nThe executor says {seen}.\n</think>\n<answer>\n{formatting.answer_text(seen)}\n</answer>"
            stop = next((s for s in req.stop if s in text), None)
            text = text[: text.find(stop)] if stop else text
            out.append(Generation(text, "stop" if stop else "eos", self.count_tokens(text), stop=stop))
        return out


def test_code_really_runs_and_counts_as_tool_use(tmp_path, pool):
    problems = [Problem("t/0", "What is 6*7?", "42", "t"), Problem("t/1", "What is 6*7+1?", "43", "t")]
    records = evaluate(CodeThenAnswer(), problems, JsonlStore(tmp_path / "e.jsonl"), pool, benchmark="toy", samples=1)
    assert [r["correct"] for r in records] == [True, False]
    kinds = [s["kind"] for s in records[0]["trajectory"]["segments"]]
    assert kinds == ["think", "code", "executor", "think", "answer"]
    assert records[0]["trajectory"]["segments"][2]["text"] == "42"
    row = summarize(records)[0]
    assert row["tool_use_rate"] == 1.0 and row["mean_code_calls"] == 1.0 and row["code_error_rate"] == 0.0


# --- the stage ------------------------------------------------------------------------------------
def stage_cfg(tmp_path, shared_data, models, **eval_kw):
    data = {
        "run_name": "evaltest",
        "output_dir": str(tmp_path / "outputs"),
        "data": {"test": [{"kind": "dualdistill", "name": "aime2025", "path": str(shared_data / "test/aime2025.jsonl")},
                          {"kind": "synthetic", "split": "test", "name": "world_test", "n": 4}]},
        "world": {"n_test": 4},
        "sandbox": {"workers": 1},
        "eval": {"models": models, "budgets": {"S": 16, "L": 4096}, "samples": 2, "limit": 6, "max_code_calls": 2,
                 **eval_kw},
    }
    return config_from_dict(data)


def test_run_evaluation_writes_records_and_summary(tmp_path, shared_data, aime):
    replay = {"backend": "replay", "replay_path": write_replay(tmp_path / "r.jsonl", aime), "replay_fields": ["a", "b"]}
    models = [{"name": "replayer", "policy": replay, "tools": False}]
    cfg = stage_cfg(tmp_path, shared_data, models, max_failed_fraction=0.5)  # 16 of 40 may fail
    paths = RunPaths.of(cfg)
    paths.summary.parent.mkdir(parents=True)
    paths.summary.write_text(json.dumps({"teacher": {"n": 3}, "eval": [{"stale": True}]}))
    # the world problems have no trace: their samples fail, are recorded and counted
    out = evaluation.run(cfg, progress=False)
    assert out["models"] == ["replayer"] and out["benchmarks"] == {"aime2025": 6, "world_test": 4}
    assert out["n_new"] == 2 * 10 * 2 and out["failed"] == 2 * 4 * 2
    acc = out["accuracy"]["replayer"]
    # budget S (16 tokens) truncates every trace before its answer; L lets them finish
    assert acc["aime2025"]["S"] == 0.0
    assert acc["aime2025"]["L"] == pytest.approx((sum(map(right_a, range(6))) + sum(map(right_b, range(6)))) / 12)
    summary = json.loads(paths.summary.read_text())
    assert summary["teacher"] == {"n": 3}
    rows = {(r["benchmark"], r["budget"], r["subset"]): r for r in summary["eval"]}
    assert rows[("aime2025", "S", "all")]["truncation_rate"] == 1.0
    assert rows[("aime2025", "L", "all")]["truncation_rate"] == 0.0
    assert rows[("world_test", "L", "all")]["n_failed"] == 8 and rows[("world_test", "L", "all")]["n_samples"] == 0
    assert not rows[("world_test", "L", "all")]["complete"] and rows[("aime2025", "L", "all")]["complete"]
    assert ("world_test", "L", "computation") in rows and ("world_test", "L", "family:modpow") in rows
    records = JsonlStore(paths.eval_records("replayer")).read()
    assert {r["budget_tokens"] for r in records} == {16, 4096} and not any(r["tools"] for r in records)
    assert (paths.root / "eval" / "config.yaml").is_file()
    again = evaluation.run(cfg, progress=False)  # resumable: only the failures are retried
    assert again["n_new"] == 16 and again["accuracy"] == out["accuracy"]
    with pytest.raises(IncompleteStage, match="16 of 40 samples failed"):  # no tolerance: the stage says so
        evaluation.run(stage_cfg(tmp_path, shared_data, models), progress=False)


def test_a_model_with_every_sample_recorded_builds_no_policy(tmp_path, shared_data, aime, monkeypatch):
    """A rerun starts no engine or server for a model it has nothing to sample for (vllm-server: ~30 s
    per model on a CPU), and the run's ledger keeps the entry of the run that sampled."""
    from dualdistill.artifacts.ledger import what_ran

    replay = {"backend": "replay", "replay_path": write_replay(tmp_path / "r.jsonl", aime), "replay_fields": ["a", "b"]}
    cfg = stage_cfg(tmp_path, shared_data, [{"name": "replayer", "policy": replay, "tools": False}], limit=2)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"test": cfg.data.test[:1]})})
    built = []
    real = evaluation.build_model_policy
    monkeypatch.setattr(evaluation, "build_model_policy", lambda *a, **kw: built.append(1) or real(*a, **kw))
    assert evaluation.run(cfg, progress=False)["n_new"] == 8 and built == [1]
    [entry] = what_ran(cfg)
    assert (entry["role"], entry["backend"], entry["trajectories"]) == ("eval:replayer", "replay", 8)
    assert evaluation.run(cfg, progress=False)["n_new"] == 0 and built == [1]  # nothing missing: nothing built
    assert what_ran(cfg) == [entry]


def test_missing_checkpoints_name_model_and_stage(tmp_path, shared_data):
    cfg = stage_cfg(tmp_path, shared_data, ["S1", "S2", "text_only"])
    cfg = cfg.model_copy(update={"baselines": {"text_only": "text"}})
    with pytest.raises(MissingStageError, match=r"stage 03 .*has not run .*model S1 at .*models/S1"):
        evaluation.run(cfg, progress=False)
    assert not RunPaths.of(cfg).eval_dir.exists()  # nothing written before the check
    models = evaluation.eval_models(cfg)
    with pytest.raises(MissingStageError, match=r"stage 04 .*model S2"):
        evaluation.model_policy_config(cfg, models[1])
    with pytest.raises(MissingStageError, match=r"stage 03 .*model text_only"):
        evaluation.model_policy_config(cfg, models[2])
    with pytest.raises(FileNotFoundError, match=r"'S9'.*no stage of this params file trains it"):
        evaluation.model_policy_config(cfg, EvalModel(name="S9"))
    (RunPaths.of(cfg).model("S1")).mkdir(parents=True)
    pcfg = evaluation.model_policy_config(cfg, models[0])
    assert pcfg.model == str(RunPaths.of(cfg).model("S1")) and pcfg.backend == cfg.student.backend
    # S0 of a hub student is the hub id itself (resolved by the backend, not checked here)
    hub = cfg.model_copy(update={"student": cfg.student.model_copy(update={"model": "org/some-7b"})})
    assert evaluation.model_policy_config(hub, EvalModel(name="S0")).model == "org/some-7b"


def test_eval_models_and_benchmarks(tmp_path, shared_data):
    cfg = stage_cfg(tmp_path, shared_data, ["S1", {"name": "api", "policy": {"backend": "openai", "model": "m"}}],
                    tools=False)
    models = evaluation.eval_models(cfg)
    assert [(m.name, m.tools) for m in models] == [("S1", False), ("api", True)]
    with pytest.raises(ValueError, match="duplicate names"):
        evaluation.eval_models(stage_cfg(tmp_path, shared_data, ["S1", "S1"]))
    with pytest.raises(ValueError, match="file-name safe"):
        evaluation.eval_models(stage_cfg(tmp_path, shared_data, ["../S1"]))
    benches = evaluation.load_benchmarks(cfg)
    assert {b: len(p) for b, p in benches.items()} == {"aime2025": 6, "world_test": 4}
    twice = cfg.model_copy(update={"data": cfg.data.model_copy(update={"test": cfg.data.test[:1] * 2})})
    with pytest.raises(ValueError, match="two sources are named 'aime2025'"):
        evaluation.load_benchmarks(twice)


def test_eval_hash_and_model_fingerprint(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"x" * 10)
    pcfg = PolicyConfig(backend="hf", model=str(model))
    def sampling(backend: str, **kw: float) -> dict:
        return sampling_record(backend, SamplingSettings(temperature=0.6, **kw), seed=0)

    base = dict(budget=4096, sampling=sampling("hf"), tools=True, max_code_calls=10)
    h = evaluation.eval_hash(pcfg, **base)
    assert h == evaluation.eval_hash(pcfg, **base)
    assert h == evaluation.eval_hash(pcfg.model_copy(update={"max_concurrency": 99}), **base)  # runtime knob
    assert h != evaluation.eval_hash(pcfg, **{**base, "budget": 512})
    assert h != evaluation.eval_hash(pcfg, **{**base, "sampling": sampling("hf", top_p=0.95)})
    assert h != evaluation.eval_hash(pcfg, **{**base, "sampling": sampling("vllm")})
    assert h != evaluation.eval_hash(pcfg, **base, benchmark_version="2")
    assert h != evaluation.eval_hash(pcfg, **base, prompt_style="compact")
    fp = model_fingerprint(model)
    assert fp.startswith("dir:") and model_fingerprint(tmp_path / "nope") == str(tmp_path / "nope")
    (model / "model.safetensors").write_bytes(b"x" * 11)  # other weights
    assert model_fingerprint(model) != fp and evaluation.eval_hash(pcfg, **base) != h
    (model / SFT_STAMP).write_text(json.dumps({"hash": "abc"}))  # a model this project trained: its SFT hash
    assert model_fingerprint(model) == "sft:abc"


def test_cli_writes_summary(tmp_path, shared_data, aime):
    replay = {"backend": "replay", "replay_path": write_replay(tmp_path / "r.jsonl", aime), "replay_fields": ["a", "b"]}
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({
        "run_name": "cli", "output_dir": str(tmp_path / "outputs"),
        "data": {"test": [{"kind": "dualdistill", "name": "aime2025", "path": str(shared_data / "test/aime2025.jsonl")}]},
        "eval": {"models": [{"name": "replayer", "policy": replay, "tools": False}], "budgets": {"S": 4096},
                 "samples": 1},
    }))
    from dualdistill.stages.entry import main

    assert main("05", [str(params), "--quiet", "--set", "eval.limit=3"]) == 0
    out = read_metrics(load_config(params), "05")
    assert out["benchmarks"] == {"aime2025": 3}
    rows = json.loads((tmp_path / "outputs" / "cli" / "report" / "summary.json").read_text())["eval"]
    assert rows[0]["n_samples"] == 3 and rows[0]["accuracy"] == pytest.approx(1 / 3)  # right_a: problem 0 only


# --- benchmark registry ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(benchmarks.BENCHMARKS))
def test_every_benchmark_resolves_and_loads(name):
    bench = benchmarks.get_benchmark(name)
    src = benchmarks.benchmark_source(name, limit=None if name != "synthetic" else 6,
                                      **({"n": 6} if name == "synthetic" else {}))
    problems = load_source(src)
    assert len(problems) == (bench.n_problems or 6)
    assert benchmarks.benchmark_name(src) == name and bench.version
    assert bench.paper_column is None or bench.paper_column in paper_results.PAPER_COLUMNS
    assert bench.build_prompt("Q", code=True) == formatting.build_prompt("Q", code=True)
    assert bench.extract("<answer>\nThe answer is \\boxed{7}\n</answer>\n") == "7"


def test_shared_files_are_all_registered():
    registered = {b.file for b in benchmarks.BENCHMARKS.values() if b.file}
    assert registered == {f for f, _ in SHARED_FILES.values() if f.startswith("test/")}
    assert benchmarks.benchmark_name(DataSource(kind="dualdistill", path="x/math500_test.jsonl")) == "math500"
    with pytest.raises(KeyError, match="unknown benchmark 'nope'"):
        benchmarks.get_benchmark("nope")
    for res in paper_results.PAPER_RESULTS.values():
        assert set(res) == {*paper_results.PAPER_COLUMNS, "avg"}


# --- notebook 05 ----------------------------------------------------------------------------------
def test_notebook_05_with_a_replay_model(tmp_path, shared_data, aime, repo_root):
    """Notebook 05 end to end on 4 AIME problems with a replayed model (papermill, python3 kernel =
    the interpreter running the tests)."""
    from dualdistill.pipeline.papermill_runner import execute_notebook

    replay = {"backend": "replay", "replay_path": write_replay(tmp_path / "r.jsonl", aime), "replay_fields": ["a", "b"]}
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({
        "run_name": "nb05", "output_dir": str(tmp_path / "outputs"),
        "data": {"test": [{"kind": "dualdistill", "name": "aime2025", "path": str(shared_data / "test/aime2025.jsonl")}]},
        "eval": {"models": [{"name": "replayer", "policy": replay, "tools": False}], "budgets": {"S": 4096},
                 "samples": 2},
    }))
    out = tmp_path / "05.ipynb"
    execute_notebook(repo_root / "notebooks" / "05_evaluation.ipynb", out,
                     {"params": str(params), "overrides": {"eval.limit": 4}}, progress=False)
    metrics = read_metrics(load_config(params), "05")
    # problems 0..3: sample 0 right on 0 and 3, sample 1 right on 0 and 2
    assert metrics["accuracy"] == {"replayer": {"aime2025": {"S": pytest.approx(4 / 8)}}}
    assert metrics["n_records"] == 8 and metrics["n_new"] == 8 and metrics["failed"] == 0
    assert metrics["tool_use_rate"] == {"replayer/aime2025/S": 0.0}


# --- the released model under its own prompt (params/eval-agentic-r1.yaml), on CPU with a tiny model -----
def test_eval_agentic_r1_params_run_on_cpu_with_a_tiny_model(tmp_path, repo_root):
    """The code path of ``params/eval-agentic-r1.yaml`` with ``VanishD/Agentic-R1`` replaced by a tiny
    local model on the hf backend: every benchmark, the official evaluation request byte for byte, both
    scores in every record and row, and the paper's rows beside the official-comparable score."""
    from dualdistill.artifacts.current import eval_rows
    from dualdistill.common.store import read_jsonl
    from dualdistill.stages import analysis
    from tests.helpers_tiny import build_scripted_tiny

    tiny = build_scripted_tiny(tmp_path / "tiny")["dir"]
    cfg = load_config(repo_root / "params" / "eval-agentic-r1.yaml", {
        "output_dir": str(tmp_path / "out"), "device": "cpu", "eval.limit": 2, "eval.samples": 1,
        "eval.budgets": {"S": 24}, "sandbox.workers": 1, "sandbox.preload": [],
        "eval.models": [{"name": "agentic-r1", "policy": {"backend": "hf", "model": str(tiny), "dtype": "float32"}}],
    })
    assert cfg.student.prompt_style == "official"
    out = evaluation.run(cfg, progress=False)
    assert out["benchmarks"] == {"combinatorics300": 2, "math500": 2, "aime2025": 2, "amc": 2}
    records = read_jsonl(RunPaths.of(cfg).eval_records("agentic-r1"))
    assert len(records) == 8
    for r in records:
        request = r["trajectory"]["prompt"] + formatting.GENERATION_PREFIX  # the loop prefills "<think>\n"
        text = Problem.from_dict(r["problem"]).text_for("official")  # as read: the official code does not strip
        assert request == formatting.build_prompt(text, code=True, style="official-eval")
        assert isinstance(r["official_correct"], bool) and isinstance(r["correct"], bool)
    rows = [row for row in eval_rows(cfg) if row["subset"] == "all"]
    assert len(rows) == 4 and all(row["official_accuracy"] is not None and row["score_disagreement"] is not None
                                  for row in rows)
    md = open(analysis.run(cfg, progress=False)["results_md"]).read()
    assert "official-comparable score" in md and "| paper: Agentic-R1-7B |" in md


# --- official mode: the first request of every problem of the four benchmarks -----------------------
@pytest.mark.parametrize("name", ["aime2025", "amc", "combinatorics300", "math500"])
def test_official_first_requests_are_the_official_ones_for_every_problem(name, shared_data):
    """Official mode sends the problem text as read from the file (the official code does not strip it):
    the first request of every problem is BOS + what the official ``server_inference`` sends (its
    server adds the BOS), byte for byte — also for the problems whose text has surrounding whitespace."""
    from types import SimpleNamespace

    from dualdistill.data.benchmarks import benchmark_source
    from dualdistill.data.loaders import load_file
    from tests import official_ref as ref

    ev = ref.evaluate()
    sent: list[str] = []

    class FirstRequest:
        def __init__(self, **_):
            self.completions = SimpleNamespace(create=lambda *, prompt, **__: sent.append(prompt) or iter([]))

    src = benchmark_source(name)
    rows = [json.loads(line) for line in open(src.path, encoding="utf-8") if line.strip()]
    problems = load_file(src)
    assert len(problems) == len(rows)
    old, ev.OpenAI = ev.OpenAI, FirstRequest
    try:
        for row in rows:
            ev.server_inference(model_base_url="x", model_name="m", tokenizer_path="t",
                                input=ref.utils().find_question(row), code_mode=True)
    finally:
        ev.OpenAI = old
    mode = formatting.loop_mode("official")
    ours = [formatting.sampling_prompt(p.text_for(mode), code=True, style="official") + formatting.GENERATION_PREFIX
            for p in problems]
    assert ours == [formatting.BOS_TOKEN + s for s in sent]
    stripped = sum(p.problem != p.text_for(mode) for p in problems)
    assert stripped == {"combinatorics300": 6}.get(name, 0)  # the project's own mode still strips these
