"""Stage 01 (dualdistill.stages.teacher_rollouts): pairs, grades, z, records, retries, stage 0, kill -9 resume,
and one stage function whichever way it is called (``python -m``, the CLI, the notebook).

The world's scripted teachers run under the real tool loop and sandbox; failures come from the
replay backend with missing traces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dualdistill.artifacts.current import teacher_records as load_teacher_records
from dualdistill.artifacts.identity import rollout_hash
from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.failures import IncompleteStage
from dualdistill.common.store import JsonlStore
from dualdistill.config import config_from_dict
from dualdistill.formats import formatting
from dualdistill.formats.trajectory import Trajectory
from dualdistill.grading.grader import grade
from dualdistill.stages.teacher_rollouts import first_teacher, run_stage0_rollouts, run_teacher_rollouts

REPO = Path(__file__).resolve().parents[1]


def world_params(tmp_path: Path, *, n_train: int = 12, **over) -> dict:
    params = {
        "run_name": "roll",
        "output_dir": str(tmp_path / "outputs"),
        "seed": 0,
        "world": {"seed": 0, "n_train": n_train, "n_test": 6, "n_stage0": 8},
        "data": {"train": [{"kind": "synthetic", "split": "train"}],
                 "test": [{"kind": "synthetic", "split": "test", "name": "world_test"}]},
        "teachers": {"budget": 1024, "max_code_calls": 3},
        "sandbox": {"timeout": 1.0, "workers": 2, "memory_mb": 512},
        "student": {"model": "tiny"},
    }
    for key, value in over.items():
        section, field = key.split(".")
        params[section][field] = value
    return params


def test_pairs_grades_records_and_rerun(tmp_path):
    cfg = config_from_dict(world_params(tmp_path))
    summary = run_teacher_rollouts(cfg, progress=False, chunk_size=5)
    path = RunPaths.of(cfg).teacher_rollouts
    records = JsonlStore(path).read()
    assert summary["records"] == summary["new_records"] == len(records) == 24 and summary["failed"] == 0
    assert len({r["key"] for r in records}) == 24
    assert (path.parent / "config.yaml").is_file()

    pairs: dict[str, dict[str, dict]] = {}
    for r in records:
        assert r["status"] == "ok" and r["config_hash"] == rollout_hash(cfg)
        pairs.setdefault(r["problem"]["id"], {})[r["role"]] = r
    assert len(pairs) == 12
    for pid, pair in pairs.items():
        first, second = pair["first"], pair["second"]
        assert first["teacher"] == first_teacher(cfg, pid) and second["teacher"] != first["teacher"]
        y1, y2 = Trajectory.from_dict(first["trajectory"]), Trajectory.from_dict(second["trajectory"])
        # y2 is conditioned on y1: its prompt shows y1's completion
        assert y1.completion in y2.prompt and formatting.SECOND_TEACHER_INSTRUCTION.split("{")[0] in y2.prompt
        for rec, traj in ((first, y1), (second, y2)):
            assert (formatting.CODE_INSTRUCTION in traj.prompt) == (rec["teacher"] == "agent")
            assert rec["correct"] == grade(traj.completion, rec["problem"]["answer"])
            if rec["teacher"] == "text":
                assert traj.n_code_calls == 0
            else:  # the agent's code really ran in the sandbox
                assert traj.n_code_calls >= 1
                assert all(s.meta["status"] in ("ok", "error", "timeout", "killed")
                           for s in traj.segments if s.kind == "code")
    acc = summary["accuracy"]
    for teacher in ("text", "agent"):
        for role in ("first", "second"):
            vals = [r["correct"] for r in records if r["teacher"] == teacher and r["role"] == role]
            if vals:
                assert acc[teacher][role] == round(sum(vals) / len(vals), 4)
    assert {row["level"] for row in summary["accuracy_table"]} == {"subset", "family"}

    before = path.read_bytes()
    again = run_teacher_rollouts(cfg, progress=False)
    assert again["new_records"] == 0 and path.read_bytes() == before
    assert len(load_teacher_records(cfg)) == 24
    other = config_from_dict(world_params(tmp_path), overrides={"teachers.temperature": 0.3})
    assert rollout_hash(other) != rollout_hash(cfg) and load_teacher_records(other) == []


def test_z_is_stable_and_follows_first_agent_prob(tmp_path):
    ids = [f"p{i}" for i in range(1000)]
    half = config_from_dict(world_params(tmp_path))
    draws = [first_teacher(half, i) for i in ids]
    assert draws == [first_teacher(half, i) for i in ids]
    assert 0.45 < draws.count("agent") / len(ids) < 0.55
    for prob, teacher in ((0.0, "text"), (1.0, "agent")):
        cfg = config_from_dict(world_params(tmp_path), overrides={"teachers.first_agent_prob": prob})
        assert {first_teacher(cfg, i) for i in ids} == {teacher}


def replay_params(tmp_path: Path, traces: Path) -> dict:
    problems = tmp_path / "problems.jsonl"
    texts = ["What is 0 plus 0? Think about the sum of zero and zero.", "Add one to one.",
             "How much is two and two together?", "Double the number three, please.",
             "Four plus four equals what?", "Compute five plus five for me."]
    rows = [{"id": f"q{i}", "problem": t, "answer": 2 * i} for i, t in enumerate(texts)]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test = tmp_path / "test.jsonl"  # q0's text, nearly: removed as a near-duplicate
    test.write_text(json.dumps({"problem": "What is 0 plus 0? Think about the sum of zero and zero!", "answer": 0}) + "\n")
    replay = {"backend": "replay", "replay_path": str(traces), "replay_fields": ["sol"]}
    return {
        "run_name": "replay",
        "output_dir": str(tmp_path / "outputs"),
        "data": {"train": [{"kind": "jsonl", "path": str(problems), "field_map": {"id": "id"}, "name": "toy"}],
                 "test": [{"kind": "jsonl", "path": str(test), "name": "toytest"}]},
        "teachers": {"text": replay, "agent": replay, "budget": 512},
    }


def test_failed_generations_are_recorded_then_retried_on_rerun(tmp_path):
    traces = tmp_path / "traces.jsonl"
    sol = "I add.\n</think>\nThe sum is \\boxed{{{}}}."
    traces.write_text("".join(json.dumps({"id": f"toy/q{i}", "sol": sol.format(2 * i)}) + "\n" for i in range(1, 4)))
    cfg = config_from_dict(replay_params(tmp_path, traces))
    tolerant = config_from_dict(replay_params(tmp_path, traces), overrides={"teachers.max_failed_fraction": 0.25})
    summary = run_teacher_rollouts(tolerant, progress=False, retries=1, backoff=0)
    assert summary["near_duplicates_removed"] == 1 and summary["problems"] == 5
    recs = JsonlStore(RunPaths.of(cfg).teacher_rollouts).read()
    failed = [r for r in recs if r["status"] == "failed"]
    # q4, q5 have no trace: y1 fails (twice: 1 retry) and is recorded; no y2 without a y1
    assert sorted(r["problem"]["id"] for r in failed) == ["toy/q4", "toy/q5"]
    assert all(r["role"] == "first" and "no recorded trace" in r["error"] and r["correct"] is False for r in failed)
    assert summary["failed"] == 2 and summary["errored_attempts"] == 4 and summary["ok"] == 6
    assert all(r["correct"] for r in recs if r["status"] == "ok")
    with pytest.raises(IncompleteStage, match="stage 01 incomplete: 2 of 8 teacher rollouts failed"):
        run_teacher_rollouts(cfg, progress=False, retries=0)  # no tolerance: tried again, failed again, said so

    with open(traces, "a") as f:  # the traces become available: a rerun retries only the failed ones
        for i in (4, 5):
            f.write(json.dumps({"id": f"toy/q{i}", "sol": sol.format(2 * i)}) + "\n")
    again = run_teacher_rollouts(cfg, progress=False, retries=0)
    assert again["new_records"] == 4 and again["failed"] == 0 and again["ok"] == 10
    recs = JsonlStore(RunPaths.of(cfg).teacher_rollouts).read()
    ok_keys = Counter(r["key"] for r in recs if r["status"] == "ok")
    assert len(ok_keys) == 10 and set(ok_keys.values()) == {1}
    assert len(load_teacher_records(cfg)) == 10


def test_stage0_rollouts(tmp_path):
    cfg = config_from_dict(world_params(tmp_path))
    summary = run_stage0_rollouts(cfg, progress=False)
    recs = JsonlStore(RunPaths.of(cfg).root / "rollouts" / "stage0.jsonl").read()
    assert summary["records"] == len(recs) == 8
    assert {(r["teacher"], r["role"], r["sample"]) for r in recs} == {("text", "first", 0)}
    assert all(r["problem"]["id"].startswith("world-stage0-") for r in recs)
    assert run_stage0_rollouts(cfg, progress=False)["new_records"] == 0
    no_world = config_from_dict({k: v for k, v in world_params(tmp_path).items() if k not in ("world", "data")})
    with pytest.raises(ValueError, match="world"):
        run_stage0_rollouts(no_world)


def test_stage0_rollouts_draw_from_the_stage0_families(tmp_path):
    params = world_params(tmp_path)
    params["world"].update(families=["modpow", "round_table", "pair_difference"],
                           stage0_families=["modpow", "round_table"])
    cfg = config_from_dict(params)
    run_stage0_rollouts(cfg, progress=False)
    recs = JsonlStore(RunPaths.of(cfg).stage0_rollouts).read()
    assert len(recs) == 8 and {r["problem"]["family"] for r in recs} == {"modpow", "round_table"}


def test_kill_9_mid_run_then_resume(tmp_path):
    """SIGKILL the CLI after a few records; add a torn line; rerun: nothing lost, nothing twice."""
    params = world_params(tmp_path, n_train=16)
    params["sandbox"]["workers"] = 1
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    cfg = config_from_dict(params)
    path = RunPaths.of(cfg).teacher_rollouts
    cmd = [sys.executable, "-m", "dualdistill.stages.teacher_rollouts", str(pfile), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["key"]: r for r in JsonlStore(path).read()}
    assert 4 <= len(before) < 32
    with open(path, "ab") as f:
        f.write(b'{"key": "torn|write", "problem": {"id"')  # a write cut by the crash
    assert "torn|write" not in JsonlStore(path).keys()

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    records = JsonlStore(path).read()
    keys = Counter(r["key"] for r in records)
    assert len(keys) == 32 and set(keys.values()) == {1}  # nothing lost, nothing twice
    assert "torn|write" not in keys and path.read_bytes().endswith(b"\n")
    assert all(r["status"] == "ok" for r in records)
    latest = {r["key"]: r for r in records}
    assert all(latest[k] == rec for k, rec in before.items())  # what was written survives as written


def _deterministic(records: list[dict]) -> list[tuple]:
    """What a rerun must reproduce exactly: everything but timings."""
    out = []
    for r in records:
        traj = dict(r["trajectory"])
        traj.pop("timings", None)
        out.append((r["key"], r["teacher"], r["role"], r["correct"], json.dumps(traj, sort_keys=True)))
    return sorted(out)


@pytest.mark.slow
def test_stage01_is_one_function_whichever_way_it_is_called(tmp_path):
    """``python -m dualdistill.stages.teacher_rollouts``, ``dualdistill rollouts`` and notebook 01 on fresh
    runs of the same params write the same records (the student is prepared every time) and the same
    metrics.json."""
    from dualdistill import cli
    from dualdistill.pipeline.papermill_runner import execute_notebook

    runs = {}
    for way in ("module", "cli", "notebook"):
        params = world_params(tmp_path / way, n_train=4)
        params["world"]["n_stage0"] = 4
        pfile = tmp_path / f"{way}.yaml"
        pfile.write_text(yaml.safe_dump(params))
        if way == "module":
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
            done = subprocess.run([sys.executable, "-m", "dualdistill.stages.teacher_rollouts", str(pfile), "--quiet"],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        elif way == "cli":
            assert cli.main(["rollouts", str(pfile), "--quiet"]) == 0
        else:
            execute_notebook(REPO / "notebooks" / "01_teacher_rollouts.ipynb", tmp_path / "01.ipynb",
                             {"params": str(pfile), "overrides": {}}, progress=False)
        cfg = config_from_dict(params)
        paths = RunPaths.of(cfg)
        assert paths.tiny_base.is_dir(), way  # every way prepares the student
        runs[way] = (_deterministic(JsonlStore(paths.teacher_rollouts).read()),
                     _deterministic(JsonlStore(paths.stage0_rollouts).read()), read_metrics(cfg, "01"))
    module, cli_run, notebook = runs["module"], runs["cli"], runs["notebook"]
    shown = (tmp_path / "01.ipynb").read_text()  # the trajectory taken apart by hand is the loop's own
    assert "The tool loop wrote exactly this text" in shown and "status ok" in shown
    assert len(module[0]) == 8 and len(module[1]) == 4
    assert module[:2] == cli_run[:2] == notebook[:2]
    for metrics in (module[2], cli_run[2], notebook[2]):
        assert metrics["teacher_rollouts"]["records"] == 8 and metrics["stage0"]["records"] == 4
        assert metrics["teacher_rollouts"]["accuracy"] == module[2]["teacher_rollouts"]["accuracy"]
