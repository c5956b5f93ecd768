"""Benchmark: how fast the grader is (the figures the test suite used to assert as thresholds).

    .venv/bin/python bench/grading_bench.py [--shared ../shared/data/dualdistill] [--repeat 3]

Prints, best of ``--repeat`` runs:

- integers: ``grade`` on 2,000 integer answers (the fast path: no math-verify), µs per item;
- shared golds: ``grade_many(workers=2)`` on every gold answer of the official training set graded
  against itself and against a perturbed copy (math-verify in helper processes), ms per item.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.grading.grader import gold_to_str, grade, grade_many  # noqa: E402


def boxed(gold: object) -> str:
    return f"<think>\nLet me think.\n</think>\n<answer>\nThe answer is \\boxed{{{gold_to_str(gold)}}}\n</answer>"


def best(fn, repeat: int) -> float:
    """The fastest of ``repeat`` single calls, in seconds."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "dualdistill")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ints = [(f"<answer>\\boxed{{{i}}}</answer>", str(i + (i % 2))) for i in range(2000)]
    t = best(lambda: [grade(r, g) for r, g in ints], args.repeat)
    print(f"integers      {len(ints):>6} items  {1e6 * t / len(ints):8.1f} µs/item  (grade, fast path)")
    path = args.shared / "train" / "whole_training_set.jsonl"
    golds = [json.loads(line)["answer"] for line in path.read_text().splitlines() if line.strip()]
    pairs = [(boxed(g), g) for g in golds] + [(boxed(f"{g_str}+1"), g) for g in golds if (g_str := gold_to_str(g))]
    t = best(lambda: grade_many(pairs, workers=2), args.repeat)
    print(f"shared golds  {len(pairs):>6} items  {1e3 * t / len(pairs):8.2f} ms/item  (grade_many, 2 workers)")


if __name__ == "__main__":
    main()
