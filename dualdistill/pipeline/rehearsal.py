"""Stand-ins for the paper-scale run's inputs, built offline, for the dress rehearsal (``params/rehearsal.yaml``).

    python -m dualdistill.pipeline.rehearsal prepare outputs/rehearsal/inputs [--n-train 32] [--seed 0]
    make rehearsal                         # prepare, then: dualdistill run params/rehearsal.yaml

``params/paper-7b-qlora.yaml`` needs a 7B student, the hub dataset DeepMath-103K, the official
985-problem list and a chat endpoint for the agentic teacher. The rehearsal replaces exactly those by
local stand-ins that have the same shape and go through the same code:

- ``standin/``: the student, a tiny ``Qwen2ForCausalLM`` with the real R1-Distill-Qwen tokenizer, saved
  like a hub download (``dualdistill.training.standin``): budgets and loss masks are counted with the real BPE,
  QLoRA quantises it, vLLM serves it. One change to the random stand-in (:func:`script_student`): a
  random model never closes its think block within a budget, so self-distillation would find no usable
  attempt, T2 would be empty and S2 a copy of S1. Here, after the newline that ends the prefilled
  ``<think>\n``, it writes :data:`SCRIPT` (``Let me guess.`` ``</think>`` ``<answer>`` ``\boxed{1}``)
  and ends — a wrong attempt (mostly) that selection turns into correction examples, so S2 is trained
  too. Its weights are otherwise random (from any other token it babbles), it never calls code;
- ``whole_training_set.jsonl``: the official problem list's schema (``{"problem", "answer"}``) with
  ``n_train`` problems of the synthetic world's train split (computation and insight families alike);
- ``deepmath-103k/``: a ``datasets.DatasetDict`` (``save_to_disk``) whose ``train`` split has
  DeepMath-103K's columns (``question``, ``final_answer``, ``difficulty``, ``topic``,
  ``r1_solution_1..3``): one row per listed problem, in another order, plus as many rows of problems
  that are not listed (the world's stage-0 split), so the join has to pick rows by problem text, as
  on the hub dataset. ``r1_solution_k`` is the world's text teacher solving the problem with its own
  arithmetic slips (``text_solution`` with seed k), written as R1 writes a solution: the reasoning, then
  ``</think>``, then the answer with ``\\boxed{}``;
- ``agent_world.jsonl``: the listed problems as ``Problem`` dicts with their generator parameters:
  what the agent chat server (``dualdistill.world.agent_server``) plays the world's agent on;
- ``prepared.json``: what was built; a directory whose options and recipe version match is reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from dualdistill.common.hashing import stable_hash
from dualdistill.config import WorldConfig
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.world import generate_split, text_solution

log = logging.getLogger(__name__)

BUILD_VERSION = 1
META_FILE = "prepared.json"
STANDIN_DIR = "standin"
PROBLEM_LIST = "whole_training_set.jsonl"
DEEPMATH_DIR = "deepmath-103k"
AGENT_WORLD = "agent_world.jsonl"
R1_FIELDS = ("r1_solution_1", "r1_solution_2", "r1_solution_3")
_TOPICS = {"computation": "Mathematics -> Number Theory -> Other", "insight": "Mathematics -> Discrete Mathematics -> Logic"}


SCRIPT = "Let me guess.\n</think>\n\n<answer>\nThe answer is \\boxed{1}"  # after the prefilled "<think>\n"
SCRIPT_FILE = "rehearsal_script.json"


def script_student(model_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Make the stand-in write :data:`SCRIPT` after the prefilled ``<think>\n``, then EOS (in place).

    The construction of ``tests/helpers_tiny.py``: the attention and MLP outputs are zeroed, so the last
    hidden state is the current token's embedding, and the (now untied) ``lm_head`` row of each script
    token is aligned with the embedding of the token before it — a bigram table along the script, with a
    margin of ~30 logits (deterministic at any temperature <= 1). The script's tokens in the R1 vocabulary
    are all different and differ from the trigger (``\n``), as a bigram table needs. Idempotent (a
    marker file holds the script and seed)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    marker = model_dir / SCRIPT_FILE
    want = {"script": SCRIPT, "seed": seed, "version": BUILD_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return want
    tok = AutoTokenizer.from_pretrained(model_dir)
    trigger = tok.encode(formatting.GENERATION_PREFIX, add_special_tokens=False)[-1]
    chain = tok.encode(SCRIPT, add_special_tokens=False)
    eos = tok.eos_token_id
    if len(set(chain)) != len(chain) or trigger in chain or eos in chain:
        raise ValueError(f"the script's tokens must be distinct and differ from the trigger and EOS: {chain}")
    config = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    dtype = weights["model.embed_tokens.weight"].dtype
    gen = torch.Generator().manual_seed(seed)
    vocab, hidden = weights["model.embed_tokens.weight"].shape
    emb = torch.randn(vocab, hidden, generator=gen)
    head = torch.randn(vocab, hidden, generator=gen) * 0.02
    unit = emb / emb.norm(dim=1, keepdim=True)
    for prev, nxt in zip([trigger, *chain], [*chain, eos], strict=True):
        head[nxt] = 3.0 * unit[prev]
    for i in range(config["num_hidden_layers"]):  # the residual stream carries only the current embedding
        for name in (f"model.layers.{i}.self_attn.o_proj.weight", f"model.layers.{i}.mlp.down_proj.weight"):
            weights[name] = torch.zeros_like(weights[name])
    weights["model.embed_tokens.weight"] = emb.to(dtype)
    weights["lm_head.weight"] = head.to(dtype)
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    (model_dir / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}, indent=2) + "\n")
    marker.write_text(json.dumps(want, indent=2) + "\n")
    return want


def r1_solution(problem: Problem, k: int, seed: int = 0) -> str:
    """The world text teacher's solution ``k`` of ``problem`` as R1 writes one (DeepMath-103K's
    ``r1_solution_k``): reasoning, ``</think>``, the answer sentence with ``\\boxed{}``."""
    segments, _ = text_solution(problem, random.Random(f"rehearsal|r1|{seed}|{problem.id}|{k}"))
    think = next(s.text for s in segments if s.kind == "think")
    answer = next(s.text for s in segments if s.kind == "answer")
    return f"Okay, let me work through this.\n{think}\n</think>\n\n{answer}"


def deepmath_row(problem: Problem, seed: int) -> dict[str, Any]:
    """A row in DeepMath-103K's schema for a world problem."""
    return {"question": problem.problem, "final_answer": problem.answer, "difficulty": 5.0,
            "topic": _TOPICS.get(problem.subset or "", "Mathematics -> Other"),
            **{field: r1_solution(problem, k, seed) for k, field in enumerate(R1_FIELDS, 1)}}


def prepare_hash(n_train: int, seed: int) -> str:
    return stable_hash({"n_train": n_train, "seed": seed, "version": BUILD_VERSION})


def prepare(out_dir: str | Path, *, n_train: int = 32, seed: int = 0, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) every stand-in input under ``out_dir`` (see the module docstring); returns what
    ``prepared.json`` holds."""
    import datasets

    from dualdistill.training.standin import build_standin

    if n_train < 6:
        raise ValueError(f"n_train must be at least 6 (one problem per world family), got {n_train}")
    out = Path(out_dir)
    t0 = time.perf_counter()
    student = build_standin(out / STANDIN_DIR, seed=seed)  # reused when current (its own build hash)
    script_student(student, seed=seed)
    build = prepare_hash(n_train, seed)
    meta_path = out / META_FILE
    if not force and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("hash") == build and all((out / f).exists() for f in (PROBLEM_LIST, DEEPMATH_DIR, AGENT_WORLD)):
            return meta
    world = WorldConfig(seed=seed)
    listed = generate_split("train", n=n_train, world=world)
    unlisted = generate_split("stage0", n=n_train, world=world)
    (out / PROBLEM_LIST).write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n"
                                            for p in listed))
    (out / AGENT_WORLD).write_text("".join(json.dumps(p.to_dict()) + "\n" for p in listed))
    rows = [deepmath_row(p, seed) for p in reversed(listed)] + [deepmath_row(p, seed) for p in unlisted]
    tmp = out / f".{DEEPMATH_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp))
    shutil.rmtree(out / DEEPMATH_DIR, ignore_errors=True)
    tmp.rename(out / DEEPMATH_DIR)
    subsets = {s: sum(p.subset == s for p in listed) for s in ("computation", "insight")}
    meta = {"hash": build, "n_train": n_train, "seed": seed, "version": BUILD_VERSION, "student": str(student),
            "problem_list": str(out / PROBLEM_LIST), "deepmath": str(out / DEEPMATH_DIR),
            "agent_world": str(out / AGENT_WORLD), "deepmath_rows": len(rows), "subsets": subsets,
            "seconds": round(time.perf_counter() - t0, 1)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log.info("rehearsal inputs in %s: %d listed problems (%s), %d DeepMath-schema rows", out, n_train, subsets,
             len(rows))
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualdistill.pipeline.rehearsal", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build (or reuse) the rehearsal's stand-in inputs")
    prep.add_argument("out_dir", help="e.g. outputs/rehearsal/inputs (params/rehearsal.yaml reads them there)")
    prep.add_argument("--n-train", type=int, default=32, help="training problems (world train split)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--force", action="store_true", help="rebuild the data files even when current")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(prepare(args.out_dir, n_train=args.n_train, seed=args.seed, force=args.force), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
