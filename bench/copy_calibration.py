"""Does the tiny student learn to copy from its prompt at this learning rate? (a calibration)

    .venv/bin/python bench/copy_calibration.py --lr 1e-3 --steps 2000 [--base outputs/demo/models/tiny_base]

Every strategy in the world needs one skill a pretrained LLM already has and a tiny model trained from
scratch must first acquire: copying a token from the prompt (an operand into code, the last digit of
the count N = 10^(10^E) + r). This trains the tiny base on the bare skill — insight problems whose trace is
"Only the last digit of the count matters: it is d." then \\boxed{d} — and prints the loss every 100
steps and the held-out accuracy per family. A copy circuit shows as a sudden drop of the loss from the
chance plateau (~0.14 here); if it never comes, the learning rate or the step budget of the demo's
SFT sections is wrong for this model size.

``--mix`` adds as many *either* problems (two 15-digit numbers that differ in the last digit) with a
trace of their own, to see whether a second copying task helps or hinders the first: ``either-text``
("The larger ends in d.", the text argument's read), ``either-code`` (the agent's one-line program,
``print(A - B)``: both numbers copied in full; held-out: the share of programs holding both exactly).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualdistill.config import SFTConfig, TinyModelConfig, load_config  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.formats.formatting import Segment  # noqa: E402
from dualdistill.grading.grader import grade  # noqa: E402
from dualdistill.training.sft import train_sft  # noqa: E402
from dualdistill.world import generate_split, tokenizer_corpus  # noqa: E402
from dualdistill.world.families import NearPair, family_names  # noqa: E402
from dualdistill.world.teachers import agent_program  # noqa: E402

INSIGHT = ["round_table", "repeating_decimal", "take_away"]
EITHER = family_names("either")


def last_digit(problem) -> int:
    """The last digit of the problem's count N (= the last digit of r)."""
    return problem.meta["r"] % 10


def either_segments(problem, mix: str) -> list[Segment]:
    if mix == "either-text":
        d = problem.meta["d"]
        return [Segment("think", f"The larger ends in {d}."), Segment("answer", formatting.answer_text(problem.answer))]
    prog = agent_program(problem, random.Random(0), typo_prob=0.0)
    return [Segment("think", prog.think), Segment("code", prog.code)]


def example(problem, style: str, mix: str = "none") -> dict:
    d = last_digit(problem) if problem.subset == "insight" else None
    segments = either_segments(problem, mix) if problem.subset == "either" else [
        Segment("think", f"Only the last digit of the count matters: it is {d}."),
        Segment("answer", formatting.answer_text(str(d)))]
    return {"key": problem.id, "problem_id": problem.id, "prompt": formatting.build_prompt(problem.problem, code=True, style=style),
            "segments": [s.to_dict() for s in segments], "mask_until_first_transition": False, "first": "text",
            "source": "calibration"}


def held_out_accuracy(model_dir: Path, problems: list, style: str, mix: str = "none") -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = tok([formatting.build_prompt(p.problem, code=True, style=style) for p in problems], return_tensors="pt",
              padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=60, do_sample=False, pad_token_id=tok.pad_token_id)
    hits: dict[str, list[bool]] = defaultdict(list)
    for p, ids in zip(problems, out, strict=True):
        text = tok.decode(ids[enc["input_ids"].shape[1]:], skip_special_tokens=True)
        if p.subset == "insight":
            hits[p.family].append(grade(text, str(last_digit(p))))
        elif mix == "either-code":
            hits[p.family + " (both copied)"].append(all(str(x) in text for x in NearPair.pair(p.meta)))
        else:
            hits[p.family].append(grade(text, p.answer))
    return {f: sum(v) / len(v) for f, v in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params/demo.yaml", help="tiny model sizes and prompt style from here")
    ap.add_argument("--base", help="a built tiny base (default: build one from --params in a temp dir)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--per-family", type=int, default=1000, help="training problems per family (stage0 + train splits)")
    ap.add_argument("--mix", default="none", choices=["none", "either-text", "either-code"],
                    help="add either problems with this trace (module docstring)")
    args = ap.parse_args()

    cfg = load_config(args.params)
    style = cfg.student.prompt_style
    work = Path(tempfile.mkdtemp(prefix="copy_calibration_"))
    base = Path(args.base) if args.base else None
    if base is None:
        from dualdistill.training.tiny_model import build_tiny

        base = build_tiny(cfg.student.tiny or TinyModelConfig(), work / "base", tokenizer_corpus(cfg.world))
    families = INSIGHT + (EITHER if args.mix != "none" else [])
    n = args.per_family * len(families)
    problems = generate_split("stage0", n=n, families=families) + generate_split("train", n=n, families=families)
    train = [example(p, style, args.mix) for p in problems]
    random.Random(0).shuffle(train)
    sft = SFTConfig(method="full", learning_rate=args.lr, lr_scheduler_type="cosine", warmup_ratio=0.05,
                    max_steps=args.steps, per_device_train_batch_size=8, max_length=768, gradient_checkpointing=False,
                    logging_steps=100, save_steps=10**6)
    result = train_sft(train, base, work / "run", sft, model_dir=work / "model", resume=False, device="cpu",
                       progress=False)
    print(f"lr {args.lr}, {result['steps']} steps, {result['seconds']:.0f} s, {len(train)} examples")
    for line in (work / "run" / "loss.csv").read_text().splitlines()[1:]:
        step, _, loss = line.split(",")[:3]
        print(f"  step {step:>5}  loss {float(loss):.3f}")
    test = generate_split("test", n=40 * len(families), families=families)
    for family, acc in held_out_accuracy(work / "model", test, style, args.mix).items():
        print(f"held-out last-digit accuracy  {family:<18} {acc:.2f}")


if __name__ == "__main__":
    main()
