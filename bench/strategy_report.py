"""What each model did, from a run's own evaluation records: strategies, switches and copied operands.

    .venv/bin/python bench/strategy_report.py outputs/demo [--models S1 S2] [--split subset|family]
    .venv/bin/python bench/strategy_report.py outputs/demo --samples        # stage 04's S1 samples instead

Per model and subset (or family), over the evaluation samples:

- ``n``, ``acc``: samples and accuracy;
- ``first code``: the first attempt runs code (a code block before any transition);
- ``chain``: a transition follows the first attempt (switch or verify: two strategies in one answer);
- ``final code`` / ``final text``: the attempt after the last transition (or the only one) runs code, or
  is text only — the strategy that gives the final answer — each with its accuracy;
- ``tool use``: a code call anywhere (the metric of stage 05);
- ``copied``: on the synthetic world, the share of the student's programs that hold every operand of
  the problem exactly (the two 15-digit numbers of an *either* problem, a, b, m / a, b / N, s of a
  computation problem), and ``code right``: the share of programs whose printed value is the answer;
- ``1st prog fails``: the first program ends in an error (a traceback, e.g. the AssertionError of a
  pair program with a mis-copied number) or a timeout; ``then right`` (the recovery): among those
  samples, the share whose final answer is right, with the counts; ``then switch``: among them, the share
  where a transition follows the failed program (the model moves on to another attempt).

``--samples`` reads stage 04's samples of S1 (``self_distill/samples.jsonl``) instead of stage 05's records:
what S1 does on the training problems that build T2.

Transitions are recognised by their sentences (``formatting.KNOWN_TRANSITIONS``), as the parser does.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.common.store import read_jsonl  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.report.metrics import latest_per_sample  # noqa: E402
from dualdistill.world.families import NearPair  # noqa: E402

OPERANDS = {"modpow": ("a", "b", "m"), "digit_sum_power": ("a", "b"), "digit_count": ("N", "s")}


def operands(problem: dict) -> list[str] | None:
    """The numbers a program must copy from the problem (None outside the synthetic world's code families)."""
    meta, family = problem.get("meta") or {}, problem.get("family")
    if family in OPERANDS:
        return [str(meta[k]) for k in OPERANDS[family]]
    if problem.get("subset") == "either":
        return [str(x) for x in NearPair.pair(meta)]
    return None


def features(rec: dict) -> dict:
    segs = formatting.as_segments(rec["trajectory"])
    cuts = [i for i, s in enumerate(segs) if s.kind == "transition"]
    first = segs[: cuts[0]] if cuts else segs
    last = segs[cuts[-1]:] if cuts else segs
    codes = [s.text for s in segs if s.kind == "code"]
    code_idx = [i for i, s in enumerate(segs) if s.kind == "code"]
    first_fail = bool(code_idx) and segs[code_idx[0]].meta.get("status") in ("error", "timeout")
    switch_after_fail = first_fail and any(i > code_idx[0] for i in cuts)
    execs = [s.text for s in segs if s.kind == "executor"]
    ops = operands(rec["problem"])
    copied = code_right = None
    if ops is not None and codes:
        numbers = re.findall(r"\d+", codes[0])
        copied = all(op in numbers for op in ops)
        code_right = bool(execs) and execs[0].strip() == str(rec["problem"]["answer"])
    return {"correct": bool(rec["correct"]), "first_code": any(s.kind == "code" for s in first), "chain": bool(cuts),
            "final_code": any(s.kind == "code" for s in last), "tool": bool(codes), "copied": copied,
            "code_right": code_right, "first_fail": first_fail, "switch_after_fail": switch_after_fail}


def _mean(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    return f"{100 * sum(xs) / len(xs):5.1f}" if xs else "    —"


def report(run: Path, models: list[str] | None, split: str, samples: bool = False) -> str:
    files = [run / "self_distill" / "samples.jsonl"] if samples else sorted((run / "eval").glob("*.jsonl"))
    records = [r for f in files for r in read_jsonl(f)]
    records = [{**r, "model": r.get("model") or "S1"} for r in records] if samples else latest_per_sample(records)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in records:
        if models and rec["model"] not in models:
            continue
        key = rec["problem"].get(split) or "?"
        f = features(rec)
        groups[(rec["model"], "all")].append(f)
        groups[(rec["model"], key)].append(f)
    order = models or list(dict.fromkeys(r["model"] for r in records))
    head = (f"{'model':<10} {split:<18} {'n':>5} {'acc':>5} {'tool':>5} {'1st code':>8} {'chain':>5} "
            f"{'final code (acc)':>16} {'final text (acc)':>16} {'copied':>6} {'code right':>10} "
            f"{'1st prog fails':>14} {'then right (n)':>16} {'then switch':>11}")
    lines = [head, "-" * len(head)]
    for model in order:
        for (m, key), fs in sorted(groups.items(), key=lambda kv: (kv[0][1] != "all", kv[0][1])):
            if m != model:
                continue
            fc = [f for f in fs if f["final_code"]]
            ft = [f for f in fs if not f["final_code"]]
            failed = [f for f in fs if f["first_fail"]]
            lines.append(
                f"{model:<10} {key:<18} {len(fs):>5} {_mean([f['correct'] for f in fs])} {_mean([f['tool'] for f in fs])} "
                f"{_mean([f['first_code'] for f in fs]):>8} {_mean([f['chain'] for f in fs])} "
                f"{_mean([f['final_code'] for f in fs]):>9} ({_mean([f['correct'] for f in fc])}) "
                f"{_mean([not f['final_code'] for f in fs]):>9} ({_mean([f['correct'] for f in ft])}) "
                f"{_mean([f['copied'] for f in fs]):>6} {_mean([f['code_right'] for f in fs]):>10} "
                f"{_mean([f['first_fail'] for f in fs]):>14} "
                f"{_mean([f['correct'] for f in failed]):>6} ({sum(f['correct'] for f in failed):>3}/{len(failed):>3}) "
                f"{_mean([f['switch_after_fail'] for f in failed]):>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory, e.g. outputs/demo")
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--split", default="subset", choices=["subset", "family"])
    ap.add_argument("--samples", action="store_true", help="stage 04's S1 samples instead of stage 05's records")
    args = ap.parse_args(argv)
    print(report(args.run, args.models, args.split, args.samples))


if __name__ == "__main__":
    main()
