"""Benchmark: exact loss masks (dualdistill.training.masking) vs the official dataloader itself vs the floor.

    .venv/bin/python bench/masking_bench.py --reference ../shared/reference/DualDistill
    .venv/bin/python bench/masking_bench.py --reference PATH --sizes 16384 --json out.json
    .venv/bin/python bench/masking_bench.py                      # without PATH: ours and the floor only

Labels for one official-format training example of N tokens (the official training prompt, a text
attempt ended by the text→code sentence, think / code / executor rounds, an answer), three ways:

- floor: one tokenizer call with offsets (``tokenizer(text, return_offsets_mapping=True)``), which any
  offset-based method needs;
- ours: ``masking.tokenize_with_labels`` with ``text_format="official"`` (render, character spans,
  that one call, a vectorised map);
- official: ``TrainData`` of the official ``sft/dataloader.py``, imported from ``--reference PATH``
  and run as written on the same text and tokenizer (its format check, two ``encode`` calls, and its
  three loops that decode the completion one token at a time and count tags in the growing text).
  Timed once per size (it is quadratic in the text length). Its labels are compared with ours: the
  differences are the boundary tokens ``dualdistill/masking.py`` documents.

The tokenizer is the tiny student's pipeline (``dualdistill.training.tiny_model.train_tokenizer``: Qwen2 split
regex, byte-level BPE, tags as added tokens) trained here on generated text with a ~32k vocabulary;
it adds no BOS (the prompt is built without one, so both sides see the same ids).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.formats import formatting as F  # noqa: E402
from dualdistill.formats import official  # noqa: E402
from dualdistill.formats.formatting import Segment  # noqa: E402
from dualdistill.training.masking import tokenize_with_labels  # noqa: E402

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


def trajectory(rng: random.Random, lexicon: list[str], n_tokens: int, tokenizer) -> tuple[str, str, list[Segment]]:
    """A problem, its official training prompt (no BOS) and official-format segments with about
    ``n_tokens`` tokens, a composed case-01 example with the text teacher first: its reasoning, the
    text→code sentence ending that think block, then think / code / executor rounds (a quarter of the
    programs fail), then the answer."""
    problem = sentence(rng, lexicon)
    prompt = F.build_prompt(problem, code=True, style="official", bos=False)
    segs = [Segment("think", " ".join(sentence(rng, lexicon) for _ in range(8))),
            Segment("transition", F.TEXT_TO_CODE, {"transition": "fix:text_to_code"})]
    used = len(tokenizer(prompt + F.render(segs), add_special_tokens=False)["input_ids"])
    while used < n_tokens - 40:
        think = Segment("think", " ".join(sentence(rng, lexicon) for _ in range(rng.randint(3, 12))))
        failed = rng.random() < 0.25
        code = Segment("code", code_block(rng), {"status": "error" if failed else "ok"})
        out = (official.ERROR_MARKERS[1] + ":\n  NameError" if failed
               else f"{rng.randint(0, 10**6)} {rng.randint(0, 10**6)}")
        ex = Segment("executor", out, {"status": code.meta["status"]})
        for seg in (think, code, ex):
            segs.append(seg)
            used += len(tokenizer(F.render_segment(seg), add_special_tokens=False)["input_ids"])
    segs.append(Segment("answer", F.answer_text(str(rng.randint(0, 999)))))
    return problem, prompt, official.place_transitions(segs)


def load_official_dataloader(reference: Path) -> ModuleType:
    """The official ``sft/dataloader.py`` from ``reference``, imported as written."""
    path = reference / "sft" / "dataloader.py"
    if not path.is_file():
        raise SystemExit(f"--reference {reference}: no sft/dataloader.py there (the official DualDistill code)")
    sys.path.insert(0, str(reference))
    spec = importlib.util.spec_from_file_location("official_sft_dataloader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_labels(dataloader: ModuleType, tokenizer, problem: str, text: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of the official ``TrainData`` for one example (its output silenced)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        data = dataloader.TrainData([{"problem": problem, "synthetic_data": text}], tokenizer,
                                    code_instruction=None, max_length=10**9)
    if len(data.items) != 1:
        raise RuntimeError("the official format check refused the benchmark's example")
    ids, labels = data.items[0]
    return ids.tolist(), labels.tolist()


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=None,
                    help="the official DualDistill code (e.g. ../shared/reference/DualDistill): time its TrainData")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--official-max", type=int, default=16384, help="largest size the official dataloader runs at")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--corpus-lines", type=int, default=40000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    from dualdistill.training.tiny_model import train_tokenizer

    dataloader = load_official_dataloader(args.reference) if args.reference else None
    rng = random.Random(args.seed)
    lexicon = make_lexicon(rng)
    corpus = [sentence(rng, lexicon) if i % 4 else code_block(rng) for i in range(args.corpus_lines)]
    corpus += [F.build_prompt("", code=True, style="official", bos=False), *F.KNOWN_TRANSITIONS]
    t0 = time.perf_counter()
    tok = train_tokenizer(corpus, args.vocab)
    print(f"tokenizer: {len(tok)} tokens (byte-level BPE, Qwen2 pipeline), trained in {time.perf_counter() - t0:.1f} s "
          f"on {sum(map(len, corpus)) / 1e6:.1f} M characters", flush=True)
    if dataloader is None:
        print("no --reference: the official dataloader is not timed", flush=True)

    rows = []
    for size in args.sizes:
        problem, prompt, segs = trajectory(rng, lexicon, size, tok)
        completion = official.render(segs)
        text = prompt + completion

        def floor(text=text):
            return tok(text, add_special_tokens=False, return_offsets_mapping=True)

        def ours(prompt=prompt, segs=segs):
            return tokenize_with_labels(tok, prompt, segs, mask_until_first_transition=True, text_format="official")

        enc = ours()
        n = len(enc["input_ids"])
        floor()  # warm up
        t_floor, t_ours = best_of(floor, args.repeats), best_of(ours, args.repeats)
        ratio_samples = [best_of(ours, 3) / best_of(floor, 3) for _ in range(3)]
        row = {"tokens": n, "chars": len(text), "floor_ms": 1e3 * t_floor, "ours_ms": 1e3 * t_ours,
               "ours_over_floor": t_ours / t_floor, "ratio_spread": [min(ratio_samples), max(ratio_samples)],
               "official_s": None, "speedup": None, "label_diffs": None}
        if dataloader is not None and size <= args.official_max:
            t0 = time.perf_counter()
            ids, labels = official_labels(dataloader, tok, problem, completion)
            row["official_s"] = time.perf_counter() - t0
            row["speedup"] = row["official_s"] / t_ours
            if ids != enc["input_ids"]:
                raise RuntimeError("the official dataloader and masking tokenised the example differently")
            row["label_diffs"] = sum(1 for x, y in zip(enc["labels"], labels, strict=True) if x != y)
        rows.append(row)
        off_s = (f"{row['official_s']:9.2f} s {row['speedup']:8.0f}×" if row["official_s"] is not None
                 else f"{'-':>11} {'-':>9}")
        print(f"{n:7d} tokens  floor {row['floor_ms']:7.2f} ms  ours {row['ours_ms']:7.2f} ms  "
              f"ours/floor {row['ours_over_floor']:.2f} ({min(ratio_samples):.2f}–{max(ratio_samples):.2f})  "
              f"official TrainData {off_s}  label diffs {row['label_diffs']}", flush=True)

    print("\n| tokens | floor (ms) | ours (ms) | ours / floor | official TrainData (s) | official / ours | labels differing |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        off = f"{r['official_s']:.2f}" if r["official_s"] is not None else "–"
        sp = f"{r['speedup']:.0f}×" if r["speedup"] is not None else "–"
        diffs = r["label_diffs"] if r["label_diffs"] is not None else "–"
        print(f"| {r['tokens']} | {r['floor_ms']:.2f} | {r['ours_ms']:.2f} | {r['ours_over_floor']:.2f} | {off} | {sp} "
              f"| {diffs} |")
    timed = [r for r in rows if r["official_s"] is not None]
    if len(timed) >= 2:
        a, b = timed[0], timed[-1]
        print(f"\nofficial TrainData growth: ×{b['official_s'] / a['official_s']:.1f} for ×{b['tokens'] / a['tokens']:.1f} "
              f"tokens (quadratic would be ×{(b['tokens'] / a['tokens']) ** 2:.0f})")
    print(f"median ours/floor: {statistics.median(r['ours_over_floor'] for r in rows):.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return {"rows": rows}


if __name__ == "__main__":
    main()
