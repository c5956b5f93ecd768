"""Throughput of the tool loop and of stage 01 with the embedded (scripted) teachers.

    .venv/bin/python bench/rollout_throughput.py [--n 60] [--workers 4] [--timeout 3.0]

Prints trajectories per minute for: the text teacher alone (no tools), the agent alone (every code
block runs in the sandbox) and the whole stage (y1 + y2 per problem, records and grading), on the
world's train split. Outputs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from dualdistill.config import PolicyConfig, SamplingSettings, config_from_dict
from dualdistill.formats import formatting
from dualdistill.rollout.policy import build_policy
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
from dualdistill.sandbox.pool import make_sandbox_pool
from dualdistill.stages.teacher_rollouts import run_teacher_rollouts
from dualdistill.world import generate_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="problems")
    ap.add_argument("--workers", type=int, default=4, help="sandboxes in the pool")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per code execution")
    ap.add_argument("--budget", type=int, default=4096)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cfg = config_from_dict({
            "run_name": "bench", "output_dir": out,
            "world": {"n_train": args.n, "n_test": 10, "n_stage0": 0},
            "data": {"train": [{"kind": "synthetic", "split": "train"}]},
            "teachers": {"budget": args.budget},
            "sandbox": {"workers": args.workers, "timeout": args.timeout},
            "student": {"model": "tiny"},
        })
        problems = generate_split("train", n=args.n, world=cfg.world)
        rows = []
        pool = make_sandbox_pool(cfg.sandbox)
        try:
            for teacher, tools in (("text", False), ("agent", True)):
                policy = build_policy(PolicyConfig(backend="scripted", model=teacher), seed=0)
                items = [RolloutItem(p, formatting.build_prompt(p.problem, code=tools), teacher) for p in problems]
                t0 = time.perf_counter()
                trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=10, temperature=0.6), budget=args.budget, sandbox_pool=pool, tools=tools, desc=teacher)
                dt = time.perf_counter() - t0
                calls = sum(t.n_code_calls for t in trajs)
                timeouts = sum(t.n_code_timeouts for t in trajs)
                rows.append((f"{teacher} teacher (loop)", len(trajs), dt, f"{calls} code calls, {timeouts} timeouts"))
        finally:
            pool.close()
        t0 = time.perf_counter()
        summary = run_teacher_rollouts(cfg, problems=problems)
        dt = time.perf_counter() - t0
        rows.append(("stage 01 (y1 + y2, graded)", summary["new_records"], dt,
                     f"accuracy {summary['accuracy']}"))

    print(f"\n{'what':30s} {'trajectories':>12s} {'seconds':>8s} {'traj/min':>9s}  notes")
    for what, n, dt, note in rows:
        print(f"{what:30s} {n:12d} {dt:8.2f} {60 * n / dt:9.1f}  {note}")
    print(f"(sandbox workers {args.workers}, timeout {args.timeout}s, budget {args.budget})")


if __name__ == "__main__":
    main()
