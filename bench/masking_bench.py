"""Benchmark: exact loss masks (dualdistill.masking) vs the official per-token-decode loop vs the floor.

    .venv/bin/python bench/masking_bench.py                       # sizes 2k 4k 8k 16k, vocab 32k
    .venv/bin/python bench/masking_bench.py --sizes 16384 --official-max 8192 --json out.json

Three ways to get labels for one trajectory of N tokens (prompt + think/code/executor blocks):

- floor: one tokenizer call with offsets (``tokenizer(text, return_offsets_mapping=True)``), which any
  offset-based method needs;
- ours: ``masking.tokenize_with_labels`` (render, character spans, that one call, a vectorised map);
- official: the official DualDistill loop as described in METHOD §7, re-implemented here: decode the
  token prefix ``ids[:i+1]`` for every i and mask tokens while the decoded text is inside
  ``<executor>`` … ``</executor>`` — quadratic, so it is timed once per size up to ``--official-max``.

The tokenizer is the tiny student's pipeline (``dualdistill.tiny.train_tokenizer``: Qwen2 split
regex, byte-level BPE, tags as added tokens) trained here on generated text with a ~32k vocabulary.
Goal: ours ≤ 1.5× the floor, and ≥ 30× faster than the official loop at 16k tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill import formatting as F  # noqa: E402
from dualdistill.formatting import Segment  # noqa: E402
from dualdistill.masking import IGNORE_INDEX, tokenize_with_labels  # noqa: E402

SYLLABLES = ["ka", "ro", "mi", "ten", "sol", "var", "qu", "ex", "pli", "den", "tor", "al", "ne", "sum", "pro", "ject",
             "mod", "ul", "ar", "fac", "tor", "ial", "pri", "me", "the", "re", "fore", "con", "gru", "ent", "di", "vis"]
COMMON = ("the we so then and of is to a that this it for with by mod let now check since each sum value "
          "number case remainder compute therefore because").split()


def make_lexicon(rng: random.Random, n: int = 30000) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def sentence(rng: random.Random, lexicon: list[str]) -> str:
    out = []
    for _ in range(rng.randint(6, 18)):
        r = rng.random()
        if r < 0.45:
            out.append(rng.choice(COMMON))
        elif r < 0.9:
            out.append(lexicon[min(int(rng.paretovariate(0.9)) - 1, len(lexicon) - 1)] if rng.random() < 0.5
                       else rng.choice(lexicon))
        else:
            out.append(str(rng.randint(0, 10**rng.randint(1, 7))))
    return " ".join(out).capitalize() + rng.choice([".", ".", ",", ":", "?"])


def code_block(rng: random.Random) -> str:
    a, b, m = rng.randint(2, 999), rng.randint(2, 99999), rng.randint(3, 9999)
    lines = [f"n = {rng.randint(10, 10**6)}", f"r = pow({a}, {b}, {m})",
             "total = sum(i * i % 7 for i in range(n))", "print(r, total)"]
    return "\n".join(rng.sample(lines, k=rng.randint(2, 4)))


def trajectory(rng: random.Random, lexicon: list[str], n_tokens: int, tokenizer) -> tuple[str, list[Segment]]:
    """A prompt and segments with about ``n_tokens`` tokens (think / code / executor rounds)."""
    prompt = F.build_prompt(sentence(rng, lexicon), code=True)
    segs: list[Segment] = []
    used = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    while used < n_tokens - 40:
        think = Segment("think", " ".join(sentence(rng, lexicon) for _ in range(rng.randint(3, 12))))
        code = Segment("code", code_block(rng), {"status": rng.choice(["ok", "ok", "ok", "error"])})
        ex = Segment("executor", f"{rng.randint(0, 10**6)} {rng.randint(0, 10**6)}", {"status": code.meta["status"]})
        for seg in (think, code, ex):
            segs.append(seg)
            used += len(tokenizer(F.render_segment(seg), add_special_tokens=False)["input_ids"])
    segs.append(Segment("answer", F.answer_text(str(rng.randint(0, 999)))))
    return prompt, segs


def official_labels(tokenizer, ids: list[int], n_prompt: int) -> list[int]:
    """The official rule: decode the prefix for every token (quadratic)."""
    labels = list(ids)
    for i in range(len(ids)):
        before = tokenizer.decode(ids[:i], skip_special_tokens=False)
        after = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        if i < n_prompt or after.count("<executor>") > before.count("</executor>"):
            labels[i] = IGNORE_INDEX
    return labels


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--official-max", type=int, default=16384, help="largest size the official loop runs at")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--corpus-lines", type=int, default=40000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    from dualdistill.tiny import train_tokenizer

    rng = random.Random(args.seed)
    lexicon = make_lexicon(rng)
    corpus = [sentence(rng, lexicon) if i % 4 else code_block(rng) for i in range(args.corpus_lines)]
    corpus += [F.SYSTEM_PROMPT + F.CODE_INSTRUCTION, *F.KNOWN_TRANSITIONS]
    t0 = time.perf_counter()
    tok = train_tokenizer(corpus, args.vocab)
    print(f"tokenizer: {len(tok)} tokens (byte-level BPE, Qwen2 pipeline), trained in {time.perf_counter() - t0:.1f} s "
          f"on {sum(map(len, corpus)) / 1e6:.1f} M characters", flush=True)

    rows = []
    for size in args.sizes:
        prompt, segs = trajectory(rng, lexicon, size, tok)
        text = prompt + F.render(segs)

        def floor(text=text):
            return tok(text, add_special_tokens=False, return_offsets_mapping=True)

        def ours(prompt=prompt, segs=segs):
            return tokenize_with_labels(tok, prompt, segs, eos=False)

        enc = tokenize_with_labels(tok, prompt, segs, eos=False, return_offsets=True)
        n = len(enc["input_ids"])
        floor(), ours()  # warm up
        t_floor, t_ours = best_of(floor, args.repeats), best_of(ours, args.repeats)
        ratio_samples = [best_of(ours, 3) / best_of(floor, 3) for _ in range(3)]
        row = {"tokens": n, "chars": len(text), "floor_ms": 1e3 * t_floor, "ours_ms": 1e3 * t_ours,
               "ours_over_floor": t_ours / t_floor, "ratio_spread": [min(ratio_samples), max(ratio_samples)],
               "official_s": None, "speedup": None, "label_diffs": None}
        if size <= args.official_max:
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
            t0 = time.perf_counter()
            off = official_labels(tok, enc["input_ids"], n_prompt)
            row["official_s"] = time.perf_counter() - t0
            row["speedup"] = row["official_s"] / t_ours
            # the official rule knows only executor blocks: compare where no failed code is involved
            failed = [sp for sp, sg in zip(F.segment_spans(segs), segs, strict=True)
                      if sg.kind == "code" and sg.meta.get("status") != "ok"]
            bad = [(len(prompt) + a, len(prompt) + b) for a, b, _, _ in failed]
            row["label_diffs"] = sum(1 for (s, e), x, y in zip(enc["offsets"], enc["labels"], off, strict=True)
                                     if x != y and not any(a <= s < b for a, b in bad))
        rows.append(row)
        off_s = f"{row['official_s']:9.2f} s {row['speedup']:8.0f}×" if row["official_s"] is not None else f"{'-':>11} {'-':>9}"
        print(f"{n:7d} tokens  floor {row['floor_ms']:7.2f} ms  ours {row['ours_ms']:7.2f} ms  "
              f"ours/floor {row['ours_over_floor']:.2f} ({min(ratio_samples):.2f}–{max(ratio_samples):.2f})  "
              f"official {off_s}  label diffs {row['label_diffs']}", flush=True)

    print("\n| tokens | floor (ms) | ours (ms) | ours / floor | official loop (s) | official / ours |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        off = f"{r['official_s']:.2f}" if r["official_s"] is not None else "–"
        sp = f"{r['speedup']:.0f}×" if r["speedup"] is not None else "–"
        print(f"| {r['tokens']} | {r['floor_ms']:.2f} | {r['ours_ms']:.2f} | {r['ours_over_floor']:.2f} | {off} | {sp} |")
    timed = [r for r in rows if r["official_s"] is not None]
    if len(timed) >= 2:
        a, b = timed[0], timed[-1]
        print(f"\nofficial loop growth: ×{b['official_s'] / a['official_s']:.1f} for ×{b['tokens'] / a['tokens']:.1f} tokens "
              f"(quadratic would be ×{(b['tokens'] / a['tokens']) ** 2:.0f})")
    print(f"median ours/floor: {statistics.median(r['ours_over_floor'] for r in rows):.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return {"rows": rows}


if __name__ == "__main__":
    main()
