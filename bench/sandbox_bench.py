"""Benchmark: the persistent sandbox vs a fresh process per call that replays all earlier code.

    .venv/bin/python bench/sandbox_bench.py --reference ../shared/reference/DualDistill   # 5 trajectories of 10 calls
    .venv/bin/python bench/sandbox_bench.py --reference PATH --trajectories 10 --json out.json

A 10-call trajectory of typical model code (math, itertools, fractions, a memoised recursion, ...),
timed three ways, mean latency per call:

- official: the official executor itself (``code_block`` of ``math_utils/utils.py``, imported from
  ``--reference PATH`` and run as written, in a scratch directory): every call writes this call's code
  after the earlier successful calls' code to a file and runs a fresh ``python`` on it, with no
  isolation at all; the code it keeps for replay doubles with every successful call (call k executes
  2^(k-1) code blocks), so its cost grows exponentially and late calls can hit its 3 s timeout
  (counted); without ``--reference`` this column is left out;
- sandbox: ``PythonSandbox`` with every limit on (namespaces when root), one per trajectory,
  start-up and close included in the mean;
- pool: ``SandboxPool`` as the tool loop uses it: each trajectory gets a fresh namespace in a
  long-lived worker (``run(owner, code)``, ``release(owner)`` drops it), so no process is started per
  trajectory (1 s of "generation" separates trajectories here); with ``preload=("numpy", "sympy")``
  the worker imports those when it starts, and a module imported once stays imported for the next
  trajectories' namespaces.

Two variants: ``stdlib`` (the cells above) and ``sympy`` (the same with ``import sympy`` in the
first call, as model code often does: a heavy import is paid once by the sandbox, on every call by
the official way). Goal: sandbox mean ≥ 30× lower than official.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.sandbox.pool import SandboxPool  # noqa: E402
from dualdistill.sandbox.python_sandbox import PythonSandbox  # noqa: E402

TIMEOUT = 60.0  # every limit is on; a generous wall clock: a loaded machine can stall an import for seconds
CELLS = [
    "import math\nfrom itertools import combinations\nN = 30",
    "def count(n, k):\n    return sum(1 for c in combinations(range(1, n + 1), k) if sum(c) % 3 == 0)\n"
    "print(count(N // 2, 4))",
    "from fractions import Fraction\nx = sum(Fraction(1, k * (k + 1)) for k in range(1, 200))\nprint(x)",
    "print(pow(4064569, 4513230, 1039 * 4283))",
    "primes = [p for p in range(2, 3000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]\n"
    "print(len(primes))",
    "print(math.comb(40, 20) % 1000)",
    "memo = {0: 0, 1: 1}\ndef fib(n):\n    if n not in memo:\n        memo[n] = fib(n - 1) + fib(n - 2)\n"
    "    return memo[n]\nprint(fib(300) % 10**9)",
    "print(sum(int(d) for d in str(2 ** 1000)))",
    "from collections import Counter\nprint(Counter(str(math.factorial(100))).most_common(3))",
    "print(len(primes), x.denominator, count(12, 3))",
]


OFFICIAL_FAILURES: list[str] = []  # the official executor's error lines (its 3 s timeout, ...), all runs


def official_executor(reference: Path) -> Any:
    """``code_block`` of the official ``math_utils/utils.py`` under ``reference``, imported as written."""
    path = reference / "math_utils" / "utils.py"
    if not path.is_file():
        raise SystemExit(f"--reference {reference}: no math_utils/utils.py there (the official DualDistill code)")
    spec = importlib.util.spec_from_file_location("official_math_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.code_block


def official(cells: list[str], code_block: Any) -> float:
    """Seconds for the whole trajectory through the official executor: it runs ``python`` from PATH
    (here this environment's interpreter) in a fresh process per call, replaying all earlier
    successful code. (It appends the code it ran to the replay, which already held the earlier code:
    the replay doubles with every successful call.) Calls that fail (e.g. its 3 s timeout) are
    recorded in ``OFFICIAL_FAILURES`` and timed as they happened."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bin").mkdir()
        launcher = Path(tmp) / "bin" / "python"  # this environment's interpreter, with its packages
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        launcher.chmod(0o755)
        old_cwd, old_path = os.getcwd(), os.environ.get("PATH", "")
        os.chdir(tmp)
        os.environ["PATH"] = f"{tmp}/bin{os.pathsep}{old_path}"
        try:
            previous, t0, failed = "", time.perf_counter(), []
            for code in cells:
                _, error, previous = code_block(code, previous_code=previous)
                failed += [error.strip().splitlines()[-1]] if error else []
            OFFICIAL_FAILURES.extend(failed)
            return time.perf_counter() - t0
        finally:
            os.chdir(old_cwd)
            os.environ["PATH"] = old_path


def sandbox(cells: list[str]) -> tuple[float, float, float]:
    """(whole trajectory incl. start-up and close, start-up until the first call returns, mean warm call)."""
    t0 = time.perf_counter()
    sb = PythonSandbox(timeout=TIMEOUT, memory_mb=1024, max_processes=16, max_output_chars=4000)
    first = sb.run(cells[0])
    t_first = time.perf_counter() - t0
    warm = []
    for code in cells[1:]:
        t = time.perf_counter()
        r = sb.run(code)
        warm.append(time.perf_counter() - t)
        assert r.ok, r.output
    sb.close()
    assert first.ok, first.output
    return time.perf_counter() - t0, t_first, statistics.mean(warm)


def pool(cells: list[str], n: int, preload: tuple[str, ...] = ()) -> float:
    """Median seconds per trajectory through a pooled worker (one namespace per trajectory)."""
    with SandboxPool(1, timeout=TIMEOUT, preload=preload) as p:
        p.run("warm-up", "pass")  # the worker is started by the pool
        p.release("warm-up")
        times = []
        for i in range(n):
            time.sleep(1.0)  # the model generates before a trajectory's first call
            t0 = time.perf_counter()
            for code in cells:
                r = p.run(i, code)
                assert r.ok, r.output
            p.release(i)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def measure(cells: list[str], trajectories: int, code_block: Any = None) -> dict[str, float | None]:
    n = len(cells)
    OFFICIAL_FAILURES.clear()
    off = statistics.median(official(cells, code_block) for _ in range(trajectories)) / n if code_block else None
    failures = len(OFFICIAL_FAILURES)
    runs = [sandbox(cells) for _ in range(trajectories)]
    sb_mean = statistics.median(r[0] for r in runs) / n
    pooled = pool(cells, trajectories) / n
    preloaded = pool(cells, trajectories, preload=("numpy", "sympy")) / n

    def ratio(x: float) -> float | None:
        return off / x if off is not None else None

    return {
        "official_ms_per_call": off * 1e3 if off is not None else None, "official_failed_calls": failures,
        "official_failures": sorted(set(OFFICIAL_FAILURES)), "sandbox_ms_per_call": sb_mean * 1e3,
        "sandbox_first_call_ms": statistics.median(r[1] for r in runs) * 1e3,
        "sandbox_later_call_ms": statistics.median(r[2] for r in runs) * 1e3,
        "pool_ms_per_call": pooled * 1e3, "speedup": ratio(sb_mean), "speedup_pool": ratio(pooled),
        "pool_preload_ms_per_call": preloaded * 1e3, "speedup_pool_preload": ratio(preloaded),
    }


def overhead_ms(calls: int = 200) -> float:
    """Round trip of an empty call in a started sandbox."""
    with PythonSandbox() as sb:
        sb.run("pass")
        t0 = time.perf_counter()
        for _ in range(calls):
            sb.run("pass")
        return (time.perf_counter() - t0) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=None,
                    help="the official DualDistill code (e.g. ../shared/reference/DualDistill): time its executor")
    ap.add_argument("--trajectories", type=int, default=5)
    ap.add_argument("--variants", default="stdlib,sympy", help="comma-separated: stdlib, sympy")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    variants = {"stdlib": list(CELLS), "sympy": ["import sympy\n" + CELLS[0], *CELLS[1:]]}
    res: dict[str, object] = {"isolation": PythonSandbox().isolation, "calls_per_trajectory": len(CELLS),
                              "empty_call_ms": overhead_ms(), "load_average": os.getloadavg()[0]}
    print(f"isolation={res['isolation']}, {os.cpu_count()} cores, load average {res['load_average']:.1f}; "
          f"empty call {res['empty_call_ms']:.3f} ms")
    code_block = official_executor(args.reference) if args.reference else None
    if code_block is None:
        print("no --reference: the official executor is not timed")

    def lower(x: float | None) -> str:
        return f"   {x:6.1f}x lower" if x is not None else ""

    for name in args.variants.split(","):
        r = measure(variants[name], args.trajectories, code_block)
        res[name] = r
        print(f"{len(CELLS)}-call trajectory, {name}:")
        if r["official_ms_per_call"] is not None:
            print(f"  official code_block (fresh process, replay all) {r['official_ms_per_call']:8.1f} ms/call"
                  f"   failed calls: {r['official_failed_calls']} of {len(CELLS) * args.trajectories} "
                  f"{r['official_failures']}")
        print(f"  sandbox (start-up + close included)    {r['sandbox_ms_per_call']:8.2f} ms/call{lower(r['speedup'])}")
        print(f"    first call incl. start-up            {r['sandbox_first_call_ms']:8.2f} ms")
        print(f"    later calls                          {r['sandbox_later_call_ms']:8.3f} ms/call")
        print(f"  pool (a namespace per trajectory)    {r['pool_ms_per_call']:8.2f} ms/call{lower(r['speedup_pool'])}")
        print(f"  pool, preload=(numpy, sympy)           {r['pool_preload_ms_per_call']:8.2f} ms/call"
              f"{lower(r['speedup_pool_preload'])}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
