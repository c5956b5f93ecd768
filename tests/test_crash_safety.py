"""kill -9 in the middle of evaluation or self-distillation sampling loses at most the trajectories in
flight: every trajectory the engine had answered well before the kill is on disk, graded, and a
rerun finishes the rest without duplicating a record.

The engine is the simulated continuous-batching server of ``bench/sim_engine.py`` (heavy-tailed
segments, 1-4 code calls per trajectory); the stages run as a user runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.sim_engine import SimConfig, SimServer
from bench.sim_script import trajectory_key
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import JsonlStore
from dualdistill.config import load_config

REPO = Path(__file__).resolve().parents[1]
N_PROBLEMS = 48
SD_SCRIPT = """
import sys
from dualdistill.config import load_config
from dualdistill.stages.self_distillation import self_distill
self_distill(load_config(sys.argv[1]), until="sample", progress=False)
"""


def write_params(tmp: Path, base_url: str, stage: str) -> Path:
    problems = tmp / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Crash-test problem number {i}?",
                                            "answer": "0"}) + "\n" for i in range(N_PROBLEMS)))
    policy = {"backend": "openai", "api": "completions", "base_url": base_url, "model": "sim", "max_concurrency": 8}
    source = {"kind": "jsonl", "name": "crash", "path": str(problems), "field_map": {"id": "id"}}
    params = {"run_name": stage, "output_dir": str(tmp / "outputs"), "device": "cpu",
              "sandbox": {"timeout": 2.0, "workers": 2}}
    if stage == "evaluate":
        params["data"] = {"test": [source]}
        params["eval"] = {"models": [{"name": "sim", "tools": True, "policy": policy}], "budgets": {"S": 4096},
                          "samples": 1, "max_code_calls": 6, "max_in_flight": 8}
    else:
        params["data"] = {"train": [source]}
        params["self_distill"] = {"k": 1, "budget": 4096, "max_code_calls": 6, "max_in_flight": 8, "policy": policy}
    path = tmp / f"{stage}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def records_path(params: Path, stage: str) -> Path:
    paths = RunPaths.of(load_config(params))
    return paths.eval_records("sim") if stage == "evaluate" else paths.sd_samples


def command(params: Path, stage: str) -> list[str]:
    if stage == "evaluate":
        return [sys.executable, "-m", "dualdistill.stages.evaluation", str(params), "--quiet"]
    return [sys.executable, "-c", SD_SCRIPT, str(params)]


def answered_before(stats: dict, script, margin: float) -> set[str]:
    """Trajectories whose answer (their last segment) the engine had sent ``margin`` seconds before
    the latest event of ``stats``."""
    reqs = stats["request_records"]
    now = max(max(r["arrival"] for r in reqs), max((r["sent"] for r in reqs if r["sent"] == r["sent"]), default=0))
    return {r["traj"] for r in reqs if r["segment"] == script.calls(r["traj"]) and r["sent"] < now - margin}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["evaluate", "self-distill"])
def test_kill_9_loses_at_most_the_trajectories_in_flight(tmp_path, stage):
    cfg = SimConfig(slots=16, step_ms=4.0, median_tokens=60, sigma=1.0, max_calls=4, seed=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with SimServer(cfg) as sim:
        params = write_params(tmp_path, sim.base_url, stage)
        path = records_path(params, stage)
        proc = subprocess.Popen(command(params, stage), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        time.sleep(random.Random(stage).uniform(0.0, 0.5))  # some moment in the middle of the run
        snapshot = sim.stats(requests=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        on_disk = JsonlStore(path).read()
        keys = Counter(r["key"] for r in on_disk)
        assert set(keys.values()) == {1}  # nothing twice
        assert all(isinstance(r["correct"], bool) and r["grade_status"] and r["trajectory"]["segments"]
                   for r in on_disk)  # every record complete and graded
        recorded = {trajectory_key(r["problem"]["problem"]) for r in on_disk}
        finished = answered_before(snapshot, cfg.script(), margin=1.0)
        assert finished and finished <= recorded, f"lost: {sorted(finished - recorded)}"
        assert len(on_disk) < N_PROBLEMS  # the kill came before the end

        done = subprocess.run(command(params, stage), cwd=REPO, env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        after = JsonlStore(path).read()
        keys = Counter(r["key"] for r in after)
        assert len(keys) == N_PROBLEMS and set(keys.values()) == {1}  # the rest done, no duplicate
        assert all(after[i] == rec for i, rec in enumerate(on_disk))  # what was written stays as written
