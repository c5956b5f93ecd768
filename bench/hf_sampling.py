"""S1 sampling with the hf backend on CPU, as stage 04 does it, at several in-flight windows.

    .venv/bin/python bench/hf_sampling.py outputs/demo --params params/demo.yaml --problems 300 --no-cap --windows 64 256

Samples K = 4 trajectories for each of ``--problems`` training problems of the synthetic world with
the run's S1 (``models/S1``) through the tool loop (``tool_loop.generate_trajectories``: budget 768,
4 code calls, temperature 0.6, the params' sandbox), once per window, and prints the wall time, the
tokens and the sizes of the ``generate`` calls. A window is passed as ``max_in_flight``; the loop
caps it at the batch size (``tool_loop.in_flight_window``), so compare windows with ``--no-cap``
(``--no-cap --windows 64 256``: one batch in flight vs the loop before the cap).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.config import PolicyConfig, SamplingSettings, load_config  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.rollout import policy as policy_mod  # noqa: E402
from dualdistill.rollout import tool_loop  # noqa: E402
from dualdistill.rollout.policy import build_policy  # noqa: E402
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories  # noqa: E402
from dualdistill.sandbox.pool import make_sandbox_pool  # noqa: E402
from dualdistill.world.families import generate_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run, e.g. outputs/demo (its models/S1 is sampled)")
    ap.add_argument("--params", default="params/demo.yaml")
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--windows", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--no-cap", action="store_true", help="lift the one-batch cap (the loop before it)")
    args = ap.parse_args()

    cfg = load_config(args.params)
    pcfg = PolicyConfig(backend="hf", model=str(args.run / "models" / "S1"), dtype=cfg.student.dtype,
                        max_concurrency=cfg.student.batch_size)
    policy = build_policy(pcfg, device="cpu", seed=0)
    if args.no_cap:
        tool_loop.in_flight_window = lambda _policy, max_in_flight: max_in_flight
    sizes: list[int] = []
    start = policy_mod.MicroBatcher._start

    def counted(self: policy_mod.MicroBatcher) -> None:
        before = len(self.batches)
        start(self)
        sizes.extend(self.batches[before:])

    policy_mod.MicroBatcher._start = counted
    problems = generate_split("train", n=args.problems, families=cfg.world.families)
    items = [RolloutItem(problem=p, prompt=formatting.sampling_prompt(p.problem, code=True, style=cfg.student.prompt_style),
                         role="student", sample=s) for p in problems for s in range(4)]
    print(f"{len(items)} trajectories, batch size {cfg.student.batch_size}, cap {'off' if args.no_cap else 'on'}")
    for window in args.windows:
        sizes.clear()
        pool = make_sandbox_pool(cfg.sandbox)
        t0 = time.perf_counter()
        trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=4, temperature=0.6, max_in_flight=window), budget=768, sandbox_pool=pool, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        pool.close()
        hist = sorted(Counter(sizes).items(), key=lambda kv: -kv[1])[:5]
        print(f"max_in_flight {window:>4}: {seconds:6.1f} s, {sum(t.n_tokens for t in trajs):,} tokens, "
              f"{len(sizes)} generate calls (most common sizes: {hist})")


if __name__ == "__main__":
    main()
