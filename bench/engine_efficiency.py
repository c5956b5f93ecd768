"""Engine efficiency of the tool loop: how close ``dualdistill evaluate`` keeps a continuous-batching
engine to its lower bound, measured against the simulated engine of ``bench/sim_engine.py``.

    .venv/bin/python bench/engine_efficiency.py          # 400 trajectories, 64 slots: ~1-4 min a row
    python bench/engine_efficiency.py --trajectories 512 --slots 256 --concurrency 256 --target-s 15
    python bench/engine_efficiency.py --checkouts ../old-checkout .   # an older loop beside this one, one run

Per ``--checkouts`` directory and ``--concurrency`` value, one row: a fresh ``python -m dualdistill.cli
evaluate PARAMS`` (the path a user runs; the package is the one of that checkout, default this one) on
``--trajectories`` distinct problems
written to a temporary jsonl, with ``eval.models`` = one EvalModel whose policy is the ``openai``
backend (``api: completions``, ``max_concurrency`` = the value) pointed at the simulator, tools on,
``--max-calls`` code calls allowed, one sample per problem, ``eval.max_in_flight`` = the value (where
the checkout's config has that field), ``--sandbox-workers`` sandboxes (default 16, the paper params). Every trajectory makes a seeded number of
calls in [1, max-calls] of trivial code (``print(n)``), so the engine, not the sandbox, dominates.

    lower bound = max(busy engine time / slots, the longest trajectory's engine time)
    efficiency  = lower bound / measured        (measured: first request to last response, at the engine)

Both from the simulator's ``/stats``. Columns: ``in flight``, the most sequences running at once at
the engine (the loop's batching and ``max_concurrency`` both cap it); ``occupancy``, busy slot time /
(slots x measured), and ``mean running`` = occupancy x slots; ``idle``, time with nothing running;
``gap``, the mean time from a response to the same trajectory's next request (its code runs in tens
of milliseconds; the rest is the loop's own waiting); ``command``, the whole ``evaluate`` command
(start-up, sandbox pool, grading included). ``--step-ms`` defaults to the step time that puts the
predicted lower bound at ``--target-s``. ``--no-tokenize`` makes the simulator answer ``/tokenize``
with 404 (the ``openai`` backend then estimates executor tokens as len/4 instead of asking the server
once per code call). Results also go to ``outputs/bench/engine_efficiency.json``, every request's
arrival / start / finish / sent times (seconds from the first request) to
``outputs/bench/engine_efficiency-requests-c<concurrency>.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sim_engine import SimConfig, SimServer  # noqa: E402
from bench.sim_script import Script, trajectory_key  # noqa: E402


def problem_text(i: int) -> str:
    return f"Simulated problem {i}: what does the program print for case {i}?"


def predicted(script: Script, n: int, budget: int) -> tuple[int, int]:
    """(total tokens, longest trajectory's tokens) the script will generate (budget cuts approximated)."""
    per = [min(budget, script.trajectory_tokens(trajectory_key(problem_text(i)))) for i in range(n)]
    return sum(per), max(per)


def has_in_flight_field(checkout: Path) -> bool:
    """Does that checkout's config know ``eval.max_in_flight`` (the asynchronous loop)?"""
    config = checkout / "dualdistill" / "config.py"
    return config.is_file() and "max_in_flight" in config.read_text()


def write_inputs(root: Path, args: argparse.Namespace, base_url: str, concurrency: int, checkout: Path) -> Path:
    """A problems jsonl and a params file for one row; returns the params path."""
    problems = root / "problems.jsonl"
    if not problems.exists():
        with problems.open("w") as f:
            for i in range(args.trajectories):
                f.write(json.dumps({"id": f"sim-{i:05d}", "problem": problem_text(i), "answer": "0"}) + "\n")
    policy = {"backend": "openai", "api": "completions", "base_url": base_url, "model": "sim",
              "max_concurrency": concurrency, "request_timeout": 600.0}
    params = {
        "run_name": f"sim-c{concurrency}",
        "output_dir": str(root / "outputs"),
        "seed": 0,
        "device": "cpu",
        "data": {"test": [{"kind": "jsonl", "name": "sim", "path": str(problems)}]},
        "sandbox": {"timeout": args.sandbox_timeout, "workers": args.sandbox_workers},
        "eval": {"models": [{"name": "sim", "tools": True, "policy": policy}], "budgets": {"S": args.budget},
                 "samples": 1, "temperature": 0.6, "max_code_calls": args.max_calls},
    }
    if has_in_flight_field(checkout):
        params["eval"]["max_in_flight"] = concurrency
    params["run_name"] = f"sim-c{concurrency}-{abs(hash(str(checkout))) % 10**6}"
    path = root / f"{params['run_name']}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def loop_outcome(root: Path, run_name: str) -> dict[str, Any]:
    """Finish reasons and code calls of the evaluation records (the loop saw the script's structure)."""
    out: dict[str, Any] = {"finish": {}, "code_calls": 0, "records": 0}
    for f in (root / "outputs" / run_name / "eval").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            traj = json.loads(line).get("trajectory") or {}
            reason = traj.get("finish_reason", "?")
            out["finish"][reason] = out["finish"].get(reason, 0) + 1
            out["code_calls"] += int(traj.get("n_code_calls") or 0)
            out["records"] += 1
    return out


def measure(sim: SimServer, root: Path, args: argparse.Namespace, concurrency: int, checkout: Path) -> dict[str, Any]:
    """One row: run that checkout's evaluation stage against the simulator and read its stats."""
    sim.reset()
    params = write_inputs(root, args, sim.base_url, concurrency, checkout)
    env = {**os.environ, "PYTHONPATH": str(checkout), "TQDM_DISABLE": "1"}
    log = root / f"{params.stem}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run([sys.executable, "-m", "dualdistill.cli", "evaluate", str(params)], cwd=checkout, env=env,
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"dualdistill evaluate failed (rc {rc}); last lines of {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-30:]))
    st = sim.stats(requests=True)
    dump = REPO / "outputs" / "bench" / f"engine_efficiency-requests-{params.stem}.jsonl"
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text("".join(json.dumps(r) + "\n" for r in st.pop("request_records")))
    trajs = list(st["trajectories"].values())
    bound_busy = st["busy_engine_s"] / st["config"]["slots"]
    bound = max(bound_busy, st["max_trajectory_engine_s"])
    measured = st["span_s"]
    requests = max(1, st["requests"] - len(trajs))
    return {
        "checkout": checkout.name, "trajectories": len(trajs), "slots": st["config"]["slots"],
        "concurrency": concurrency, "sandboxes": args.sandbox_workers,
        "in_flight": st["max_running"], "lower_bound_s": round(bound, 2), "bound_busy_s": round(bound_busy, 2),
        "bound_longest_s": round(st["max_trajectory_engine_s"], 2), "measured_s": round(measured, 2),
        "efficiency": round(bound / measured, 3) if measured else 0.0, "occupancy": st["occupancy_span"],
        "mean_running": round(st["occupancy_span"] * st["config"]["slots"], 1), "idle_s": round(st["idle_s"], 1),
        "command_s": round(wall, 1), "requests": st["requests"], "tokens": st["total_tokens"],
        "gap_s": round(sum(t["gap_s"] for t in trajs) / requests, 3),
        "queue_wait_s": st["queue_wait_s"]["mean"], "lag_max_s": st["lag_s"]["max"],
        "finish_reasons_engine": st["finish_reasons"], "loop": loop_outcome(root, params.stem),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trajectories", type=int, default=400)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--step-ms", type=float, default=None, help="engine step time (default: from --target-s)")
    ap.add_argument("--target-s", type=float, default=15.0, help="predicted lower bound when --step-ms is not given")
    ap.add_argument("--median-tokens", type=float, default=200.0, help="median segment length (tokens)")
    ap.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma of segment lengths")
    ap.add_argument("--max-calls", type=int, default=10, help="code calls per trajectory are uniform in [1, this]")
    ap.add_argument("--concurrency", type=int, nargs="+", default=None,
                    help="policy max_concurrency, one row each (default: --slots)")
    ap.add_argument("--budget", type=int, default=32768, help="token budget per trajectory (eval.budgets)")
    ap.add_argument("--sandbox-workers", type=int, default=16, help="sandboxes (the paper params: 16)")
    ap.add_argument("--checkouts", type=Path, nargs="+", default=[REPO],
                    help="repository checkouts whose loop to measure, one after another (default: this one)")
    ap.add_argument("--sandbox-timeout", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-tokenize", action="store_true",
                    help="the simulator answers /tokenize with 404 (the backend then estimates executor tokens)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (params, logs, records)")
    args = ap.parse_args()
    concurrencies = args.concurrency or [args.slots]

    script = Script(seed=args.seed, median_tokens=args.median_tokens, sigma=args.sigma, max_calls=args.max_calls)
    tokens, longest = predicted(script, args.trajectories, args.budget)
    steps = max(tokens / args.slots, longest)
    step_ms = args.step_ms or round(1000 * args.target_s / steps, 3)
    print(f"script: {args.trajectories} trajectories, {tokens} tokens, longest {longest}; step {step_ms} ms -> "
          f"predicted lower bound {steps * step_ms / 1000:.1f} s (busy/slots {tokens / args.slots * step_ms / 1000:.1f} s, "
          f"longest {longest * step_ms / 1000:.1f} s)", flush=True)
    cfg = SimConfig(slots=args.slots, step_ms=step_ms, median_tokens=args.median_tokens, sigma=args.sigma,
                    max_calls=args.max_calls, seed=args.seed, tokenize=not args.no_tokenize)
    rows = []
    tmp = tempfile.mkdtemp(prefix="engine-eff-")
    try:
        with SimServer(cfg) as sim:
            for checkout in args.checkouts:
                for c in concurrencies:
                    rows.append(measure(sim, Path(tmp), args, c, checkout.resolve()))
                    r = rows[-1]
                    print(f"  {checkout} concurrency {c}: {r['measured_s']} s, efficiency {r['efficiency']}, "
                          f"loop finish {r['loop']['finish']}, {r['loop']['code_calls']} code calls", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    head = ("checkout", "trajectories", "slots", "max_conc", "sandboxes", "in flight", "lower bound s", "measured s",
            "efficiency", "occupancy", "mean running", "idle s", "gap s", "command s")
    keys = ("checkout", "trajectories", "slots", "concurrency", "sandboxes", "in_flight", "lower_bound_s", "measured_s",
            "efficiency", "occupancy", "mean_running", "idle_s", "gap_s", "command_s")
    print("\n" + " | ".join(head))
    for r in rows:
        print(" | ".join(str(r[k]).rjust(len(h)) for k, h in zip(keys, head, strict=True)))
    out = REPO / "outputs" / "bench" / "engine_efficiency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "step_ms": step_ms, "host": platform.node(),
                               "cpus": os.cpu_count(), "rows": rows}, indent=1, default=str))
    print(f"\n(lower bound = max(busy/slots, longest trajectory); details in {out.relative_to(REPO)})")


if __name__ == "__main__":
    main()
