"""Throughput of the vLLM-on-CPU server through ``OpenAIPolicy``: N concurrent requests vs one at a time,
and tool-using trajectories through the real tool loop (``dualdistill.rollout.tool_loop``).

    .venv/bin/python bench/vllm_throughput.py                       # defaults below, ~4 min on 2 cores
    .venv/bin/python bench/vllm_throughput.py --model DIR --requests 64 --max-tokens 256 --concurrency 1 8 32

Part 1 (plain generation): a randomly initialised Qwen2 of the embedded default's size (hidden 256,
4 layers; ``dualdistill.training.tiny_model.build_tiny``) or ``--model``; every request asks for exactly
``--max-tokens`` tokens (``ignore_eos``), so tokens/s compare like with like.
Part 2 (tool loop, needs ``dualdistill.sandbox.python_sandbox``): the scripted tiny model of
``tests/helpers_tiny.py`` writes ``<code>print(42)</code>`` after every newline, so each trajectory
makes ``--code-calls`` real sandbox calls; reports trajectories/s and tokens/s with one trajectory in
flight vs the largest ``--concurrency``, and beside each the same server's tokens/s on plain
completions of the loop's mean segment length at the same concurrency: the loop's generated
tokens/s over that is how much of the server the tool loop keeps busy.
``--seeds`` instead compares, on one server at the largest ``--concurrency``, requests that carry their
own seed (vLLM's per-row sampler path: a generator per request) with requests that leave sampling to the
engine's seed (the backends' default since per-request seeds became opt-in, ``extra.request_seeds``);
rounds interleave the two, medians reported.
Results go to ``outputs/bench/vllm_throughput.json`` (and a table on stdout).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dualdistill.config import PolicyConfig, SamplingSettings, TinyModelConfig  # noqa: E402
from dualdistill.formats import formatting  # noqa: E402
from dualdistill.rollout.backends.openai_api import OpenAIPolicy  # noqa: E402
from dualdistill.rollout.backends.vllm_server import VLLMServer  # noqa: E402
from dualdistill.rollout.policy import GenerationRequest  # noqa: E402

CORPUS = [
    formatting.build_prompt("What is the remainder of 2**100 modulo 7?", code=True),
    "<think>\nWe need 2**100 mod 7. The powers of 2 cycle with period 3.\n</think>\n",
    "<code>\nprint(pow(2, 100, 7))\n</code>\n<executor>\n2\n</executor>\n<answer>\nThe answer is \\boxed{2}\n</answer>\n",
    "Compute the sum of the squares of the first 10 positive integers and reduce it modulo 11.",
] * 8


def policy_for(server: VLLMServer, concurrency: int, **extra: Any) -> OpenAIPolicy:
    cfg = PolicyConfig(backend="openai", base_url=server.base_url, model=server.model, request_timeout=600,
                       max_concurrency=concurrency, max_retries=1, extra=extra)
    return OpenAIPolicy(cfg)


def plain_generation(server: VLLMServer, n: int, max_tokens: int, concurrencies: list[int],
                     repeats: int) -> list[dict[str, Any]]:
    """Tokens/s for ``n`` requests of exactly ``max_tokens`` tokens at each concurrency (median of
    ``repeats`` rounds; the concurrencies are interleaved within a round so load drifts hit all)."""
    prompts = [f"{CORPUS[0]}<think>\nAttempt {i}: " for i in range(n)]
    with policy_for(server, max(concurrencies), extra_body={"ignore_eos": True}) as warm:
        warm.generate([GenerationRequest(p, 16) for p in prompts])  # compile / warm the engine
    walls: dict[int, list[float]] = {c: [] for c in concurrencies}
    tokens: dict[int, int] = {}
    errors: dict[int, list[str]] = {c: [] for c in concurrencies}
    for r in range(repeats):
        for c in concurrencies:
            with policy_for(server, c, extra_body={"ignore_eos": True}) as policy:
                reqs = [GenerationRequest(p, max_tokens, temperature=0.6, seed=i) for i, p in enumerate(prompts)]
                t0 = time.perf_counter()
                gens = policy.generate(reqs)
                walls[c].append(time.perf_counter() - t0)
            errors[c] += [g.error or "" for g in gens if g.finish_reason == "error"]
            tokens[c] = sum(g.n_tokens for g in gens if g.finish_reason != "error")
            print(f"  round {r + 1} concurrency {c:>3}: {tokens[c]} tokens in {walls[c][-1]:6.2f} s -> "
                  f"{tokens[c] / walls[c][-1]:8.1f} tok/s", flush=True)
    rows = []
    for c in concurrencies:
        wall = statistics.median(walls[c])
        rows.append({"concurrency": c, "requests": n, "max_tokens": max_tokens, "errors": len(errors[c]),
                     "tokens": tokens[c], "seconds_median": round(wall, 2), "seconds_all": [round(w, 2) for w in walls[c]],
                     "tokens_per_s": round(tokens[c] / wall, 1), "requests_per_s": round(n / wall, 2)})
    return rows


def seed_comparison(server: VLLMServer, n: int, max_tokens: int, concurrency: int, repeats: int) -> list[dict[str, Any]]:
    """Tokens/s of ``n`` requests of ``max_tokens`` tokens at ``concurrency``, each with its own seed vs none
    (the engine's seed), interleaved over ``repeats`` rounds."""
    prompts = [f"{CORPUS[0]}<think>\nAttempt {i}: " for i in range(n)]
    with policy_for(server, concurrency, extra_body={"ignore_eos": True}) as warm:
        warm.generate([GenerationRequest(p, 16) for p in prompts])
    walls: dict[bool, list[float]] = {False: [], True: []}
    tokens: dict[bool, int] = {}
    for r in range(repeats):
        for per_request in (False, True):
            with policy_for(server, concurrency, extra_body={"ignore_eos": True}) as policy:
                policy.send_seeds = per_request
                reqs = [GenerationRequest(p, max_tokens, temperature=0.6, seed=i) for i, p in enumerate(prompts)]
                t0 = time.perf_counter()
                gens = policy.generate(reqs)
                walls[per_request].append(time.perf_counter() - t0)
            bad = [g.error for g in gens if g.finish_reason == "error"]
            if bad:
                raise SystemExit(f"seed comparison: {len(bad)} requests failed: {bad[0]}")
            tokens[per_request] = sum(g.n_tokens for g in gens)
            print(f"  round {r + 1} {'per-request seeds' if per_request else 'engine seed only':>17}: "
                  f"{tokens[per_request]} tokens in {walls[per_request][-1]:6.2f} s", flush=True)
    return [{"seeds": "per request" if k else "engine only", "concurrency": concurrency, "requests": n,
             "max_tokens": max_tokens, "seconds_all": [round(w, 2) for w in walls[k]],
             "tokens_per_s": round(tokens[k] / statistics.median(walls[k]), 1)} for k in (False, True)]


def tool_trajectories(server: VLLMServer, n: int, code_calls: int, concurrency: int) -> dict[str, Any] | None:
    """Trajectories/s through the tool loop with real sandbox calls (None when there is no sandbox)."""
    try:
        from dualdistill.config import SandboxConfig
        from dualdistill.formats.problem import Problem
        from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
        from dualdistill.sandbox.pool import make_sandbox_pool

        pool = make_sandbox_pool(SandboxConfig(workers=min(4, n)))
    except ImportError as err:
        print(f"  tool loop skipped: {err}")
        return None
    items = [RolloutItem(problem=Problem(id=f"b{i}", problem="What is 6*7?", answer="42", source="bench"),
                         prompt=formatting.build_prompt("What is 6*7?", code=True, bos=False), role="first", sample=i)
             for i in range(n)]
    try:
        with policy_for(server, concurrency) as policy:
            t0 = time.perf_counter()
            trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=code_calls, temperature=0.6, max_in_flight=concurrency), budget=1024, sandbox_pool=pool, progress=False)
            wall = time.perf_counter() - t0
    finally:
        pool.close()
    calls = sum(t.n_code_calls for t in trajs)
    generated = sum(t.n_generated_tokens for t in trajs)
    total = sum(t.n_tokens for t in trajs)
    t_exec = sum(t.timings.get("execution", 0.0) for t in trajs)
    segment = max(1, round(generated / sum(t.meta["steps"] for t in trajs)))
    plain = plain_rate(server, concurrency, segment, requests=sum(t.meta["steps"] for t in trajs))
    row = {"trajectories": n, "concurrency": concurrency, "code_calls": calls, "generated_tokens": generated,
           "tokens_with_executor": total, "seconds": round(wall, 2), "trajectories_per_s": round(n / wall, 2),
           "tokens_per_s": round(total / wall, 1), "generated_tokens_per_s": round(generated / wall, 1),
           "plain_tokens_per_s": plain, "loop_over_plain": round(generated / wall / plain, 3) if plain else None,
           "mean_segment_tokens": segment, "execution_seconds_summed": round(t_exec, 2),
           "finish": sorted({t.finish_reason for t in trajs})}
    print(f"  concurrency {concurrency:>3}: {n} trajectories, {calls} code calls, {total} tokens in {wall:.1f} s -> "
          f"{n / wall:.2f} traj/s, {generated / wall:.1f} generated tok/s vs plain {plain} tok/s "
          f"(ratio {row['loop_over_plain']})", flush=True)
    return row


def plain_rate(server: VLLMServer, concurrency: int, max_tokens: int, requests: int) -> float:
    """Tokens/s of ``requests`` plain completions of ``max_tokens`` tokens, ``concurrency`` in flight."""
    prompts = [f"{CORPUS[0]}<think>\nPlain {i}: " for i in range(requests)]
    with policy_for(server, concurrency, extra_body={"ignore_eos": True}) as policy:
        t0 = time.perf_counter()
        gens = policy.generate([GenerationRequest(p, max_tokens) for p in prompts])
        wall = time.perf_counter() - t0
    return round(sum(g.n_tokens for g in gens if g.finish_reason != "error") / wall, 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model dir to serve (default: a random Qwen2 of the embedded default size)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 32])
    ap.add_argument("--repeats", type=int, default=3, help="rounds per concurrency (median reported)")
    ap.add_argument("--trajectories", type=int, default=16, help="tool-loop part; 0 skips it")
    ap.add_argument("--code-calls", type=int, default=4)
    ap.add_argument("--seeds", action="store_true", help="only compare per-request seeds with the engine's seed")
    ap.add_argument("--out", default=str(REPO / "outputs" / "bench" / "vllm_throughput.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.out).parent
    result: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "load_avg_at_start": os.getloadavg()}}

    model_dir = Path(args.model) if args.model else None
    if model_dir is None:
        from dualdistill.training.tiny_model import ensure_tiny

        heads = max(1, args.hidden // 64)
        tiny = TinyModelConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=heads,
                               num_key_value_heads=1 if heads % 2 else heads // 2, intermediate_size=3 * args.hidden)
        model_dir = ensure_tiny(tiny, work / f"tiny_h{args.hidden}_l{args.layers}", CORPUS)
    if args.seeds:
        c = max(args.concurrency)
        print(f"seeds: {args.requests} requests x {args.max_tokens} tokens at concurrency {c}, model {model_dir}", flush=True)
        with VLLMServer(model_dir, log_path=work / "server_seeds.log") as server:
            result["seeds"] = seed_comparison(server, args.requests, args.max_tokens, c, args.repeats)
        result["machine"]["load_avg_at_end"] = os.getloadavg()
        for row in result["seeds"]:
            print(f"{row['seeds']:>12}: {row['tokens_per_s']:8.1f} tok/s (rounds {row['seconds_all']} s)")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return result
    print(f"part 1: plain generation, {args.requests} requests x {args.max_tokens} tokens, model {model_dir}", flush=True)
    with VLLMServer(model_dir, log_path=work / "server_plain.log") as server:
        print(f"  server up in {server.startup_seconds:.0f} s", flush=True)
        result["startup_seconds"] = round(server.startup_seconds or 0, 1)
        result["plain"] = plain_generation(server, args.requests, args.max_tokens, args.concurrency, args.repeats)
    base = result["plain"][0]["tokens_per_s"]
    for row in result["plain"]:
        row["speedup_vs_first"] = round(row["tokens_per_s"] / base, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))  # part 1 is kept even if part 2 fails

    if args.trajectories > 0:
        sys.path.insert(0, str(REPO))
        from tests.helpers_tiny import build_scripted_tiny

        scripted = build_scripted_tiny(work / "scripted_tiny", trigger=("\n", ".\n"), says="<code>print(42)</code>",
                                       tag_tokens=True)
        print(f"part 2: tool loop, {args.trajectories} trajectories x {args.code_calls} code calls", flush=True)
        with VLLMServer(scripted["dir"], log_path=work / "server_tools.log") as server:
            result["tools"] = [tool_trajectories(server, args.trajectories, args.code_calls, c)
                               for c in sorted({1, max(args.concurrency)})]

    result["machine"]["load_avg_at_end"] = os.getloadavg()
    print(f"{'concurrency':>11} {'tok/s':>8} {'speed-up':>8}")
    for row in result["plain"]:
        print(f"{row['concurrency']:>11} {row['tokens_per_s']:>8.1f} {row['speedup_vs_first']:>8.2f}")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
