"""Per-family accuracy of the scripted teachers, every program run in the sandbox (METHOD §5).

    .venv/bin/python bench/teacher_accuracy.py --per-family 50 --split train --workers 8 [--tiny]

Both teachers answer the same problems as first teacher under the real tool loop
(``dualdistill.rollout.tool_loop``) with a ``SandboxPool``; answers are graded with ``dualdistill.grading.grader``.
Prints one row per family (accuracy, code calls, timeouts/errors, mean tokens) and the subset means;
``--tiny`` also times building the tiny Qwen2 student (tokenizer + model) from the world corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.config import PolicyConfig, SamplingSettings, TinyModelConfig, WorldConfig  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.rollout.policy import build_policy  # noqa: E402
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories  # noqa: E402
from dualdistill.world import FAMILIES, generate_split, tokenizer_corpus  # noqa: E402

try:
    from dualdistill.grading.grader import grade
except ImportError:  # grading.py not there yet: the final boxed answer must equal the gold answer
    def grade(response: str, gold: str) -> bool:
        return formatting.extract_final_answer(response) == gold


def time_tiny_build(world: WorldConfig) -> dict[str, float]:
    from dualdistill.training.tiny_model import build_tiny, read_build_meta

    t0 = time.perf_counter()
    corpus = tokenizer_corpus(world)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = build_tiny(TinyModelConfig(), Path(tmp) / "tiny_base", corpus)
        meta = read_build_meta(out)
    t2 = time.perf_counter()
    return {"corpus_s": round(t1 - t0, 2), "build_s": round(t2 - t1, 2), "n_params": meta["n_params"],
            "tokenizer_size": meta["tokenizer_size"], "corpus_texts": len(corpus)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-family", type=int, default=50)
    ap.add_argument("--split", default="train", choices=["train", "test", "stage0"])
    ap.add_argument("--seed", type=int, default=0, help="world seed and request seed")
    ap.add_argument("--workers", type=int, default=8, help="sandboxes in the pool")
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per code execution")
    ap.add_argument("--families", nargs="*", help="these families only (default: all)")
    ap.add_argument("--teacher", action="append", default=[], metavar="KEY=VALUE",
                    help="a scripted-teacher option, e.g. pair_check=0 (repeatable; each teacher takes its own)")
    ap.add_argument("--tiny", action="store_true", help="also time the tiny-model build")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    from dualdistill.sandbox.pool import SandboxPool

    world = WorldConfig(seed=args.seed)
    names = args.families or list(FAMILIES)
    problems = generate_split(args.split, n=args.per_family * len(names), families=names, world=world)
    options = dict(kv.split("=", 1) for kv in args.teacher)
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    timing: dict[str, float] = {}
    with SandboxPool(args.workers, timeout=args.timeout, memory_mb=1024) as pool:
        for kind in ("text", "agent"):
            from dualdistill.world.teachers import DEFAULT_OPTIONS

            extra = {k: float(v) for k, v in options.items() if k in DEFAULT_OPTIONS[kind]}
            policy = build_policy(PolicyConfig(backend="scripted", model=kind, extra=extra), seed=args.seed)
            items = [RolloutItem(problem=p, prompt=formatting.build_prompt(p.problem, code=True), role="first")
                     for p in problems]
            t0 = time.perf_counter()
            trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=10, temperature=0.6), budget=args.budget, sandbox_pool=pool, seed=args.seed, desc=f"{kind} teacher")
            timing[kind] = round(time.perf_counter() - t0, 1)
            by_family: dict[str, list] = defaultdict(list)
            for p, t in zip(problems, trajs, strict=True):
                by_family[p.family].append((grade(t.completion, p.answer), t))
            for fam, res in by_family.items():
                n = len(res)
                rows[fam][f"{kind}_acc"] = sum(ok for ok, _ in res) / n
                rows[fam][f"{kind}_tokens"] = sum(t.n_tokens for _, t in res) / n
                rows[fam][f"{kind}_valid"] = sum(t.format_valid for _, t in res) / n
                if kind == "agent":
                    rows[fam]["agent_calls"] = sum(t.n_code_calls for _, t in res) / n
                    rows[fam]["agent_timeouts"] = sum(t.n_code_timeouts for _, t in res) / n
                    rows[fam]["agent_errors"] = sum(t.n_code_errors - t.n_code_timeouts for _, t in res) / n
                rows[fam]["n"] = n

    print(f"\n{args.per_family} problems per family, split {args.split}, seed {args.seed}")
    print(f"{'family':<18} {'subset':<12} {'text':>6} {'agent':>6} {'timeout':>8} {'error':>6} "
          f"{'tok_text':>9} {'tok_agent':>9}")
    subset_acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for fam, r in rows.items():
        sub = FAMILIES[fam].subset
        for kind in ("text", "agent"):
            subset_acc[sub][kind].append(r[f"{kind}_acc"])
        print(f"{fam:<18} {sub:<12} {r['text_acc']:>6.2f} {r['agent_acc']:>6.2f} {r['agent_timeouts']:>8.2f} "
              f"{r['agent_errors']:>6.2f} {r['text_tokens']:>9.0f} {r['agent_tokens']:>9.0f}")
    for sub, accs in subset_acc.items():
        print(f"{'mean ' + sub:<31} {sum(accs['text']) / len(accs['text']):>6.2f} "
              f"{sum(accs['agent']) / len(accs['agent']):>6.2f}")
    print(f"rollout wall time: text {timing['text']} s, agent {timing['agent']} s ({args.workers} sandboxes)")
    result = {"rows": rows, "timing_s": timing, "per_family": args.per_family, "split": args.split}
    if args.tiny:
        result["tiny_build"] = time_tiny_build(world)
        print("tiny build:", json.dumps(result["tiny_build"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
