"""The ``vllm`` policy backend: vLLM in-process through its asynchronous engine (continuous batching).

    policy = VLLMPolicy(PolicyConfig(backend="vllm", model="outputs/run/models/S1",
                                     extra={"engine": {"gpu_memory_utilization": 0.85}}), seed=0)
    gens = policy.generate(requests)            # or, one request at a time: await policy.agenerate(r)

Needs vllm (``pip install 'dualdistill[gpu]'``; on CPU the ``.venv-vllm`` made by
``scripts/setup_vllm_cpu.sh``). This module imports only the standard library and
:mod:`dualdistill.rollout.policy` at import time, so it also loads inside the vllm-cpu venv.

The engine (``vllm.AsyncLLMEngine``, vLLM's ``AsyncLLM``) runs on an event loop of its own, in a
background thread; every request is one ``engine.generate`` call, so the tool loop hands each
trajectory to the engine the moment it is ready and the engine batches continuously
(``async_native``). Engine arguments: ``{"model", "dtype", "seed"}`` from the policy config, then
``cfg.extra["engine"]`` (any ``AsyncEngineArgs`` field: ``gpu_memory_utilization``,
``max_model_len``, ``max_num_seqs``, ``enforce_eager``, ``tensor_parallel_size``, ...). Without a
``max_model_len`` there, the caller's ``max_context`` (what prompt + budget need) is used, not the
model's full context (131,072 for R1-Distill-Qwen-7B, whose KV cache would not fit a 24 GB card).

Seeds: the engine has one (the policy's ``seed``: vLLM's ``seed`` engine argument); requests carry
none unless ``cfg.extra["request_seeds"]`` is true. A request with its own seed takes vLLM's per-row
sampler path (a generator per request), slower than the batch's shared one (bench/vllm_throughput.py
``--seeds``; docs/GPU.md). Per-request seeds make one trajectory reproducible whatever else is in the
batch; the engine seed alone makes a whole run reproducible only with the same batch composition.

GPU memory: the engine's model lives in its EngineCore child process. The free memory of every GPU is
logged before the engine starts, the child processes it started are recorded (``engine_pids``), and
:meth:`VLLMPolicy.close` waits until they have exited (``engine_processes.wait_gone``), so the next
engine of a stage finds the memory free.

Each request gets ``SamplingParams(n=1, temperature, top_p, top_k, max_tokens, stop, seed (opt-in),
include_stop_str_in_output=False)`` and its ``prompt_ids`` when the tool loop has them (token in,
token out), else its text encoded here (no second BOS when the text starts with it). Output mapping:
``finish_reason`` ``"length"`` → ``"length"``; ``"stop"`` with a string ``stop_reason`` → ``"stop"``
(and which string); ``"stop"`` with ``None`` / a token id → ``"eos"``; anything else → ``"error"``.
``token_ids`` are what was sampled (the stop string's tokens included, as vLLM reports them), without
the final EOS token at ``"eos"``; ``n_tokens`` counts everything sampled. A request the engine
refuses (e.g. a prompt longer than ``max_model_len``) comes back as an ``"error"`` item.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Any

from dualdistill.rollout import engine_processes
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy

log = logging.getLogger(__name__)
INSTALL_HINT = "the vllm backend needs vllm: pip install 'dualdistill[gpu]' (CPU: scripts/setup_vllm_cpu.sh)"
EXTRA_KEYS = {"engine", "request_seeds"}
CLOSE_TIMEOUT = 120.0  # seconds close() waits for the engine's processes to exit before killing them


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


def map_output(output: Any) -> Generation:
    """A vLLM ``CompletionOutput`` (text, token_ids, finish_reason, stop_reason) as a Generation."""
    token_ids = [int(t) for t in (output.token_ids or [])]
    reason, stop_reason = output.finish_reason, output.stop_reason
    stop = None
    if reason == "length":
        finish = "length"
    elif reason == "stop":
        stop = stop_reason if isinstance(stop_reason, str) else None
        finish = "stop" if stop is not None else "eos"
    else:
        return Generation(output.text or "", "error", len(token_ids), token_ids=token_ids,
                          error=f"vLLM finish_reason {reason!r}")
    n_tokens = len(token_ids)
    if finish == "eos" and token_ids:
        token_ids = token_ids[:-1]  # the EOS / stop token: counted, not kept (as the hf backend)
    extra = {"stop_token_id": stop_reason} if isinstance(stop_reason, int) else {}
    return Generation(output.text, finish, n_tokens, token_ids=token_ids, stop=stop, extra=extra)


def engine_args(cfg: Any, *, seed: int, max_context: int | None = None) -> dict[str, Any]:
    """The engine's arguments: model, dtype, seed, ``cfg.extra["engine"]``, and ``max_model_len``
    from ``max_context`` unless the params set it."""
    unknown = set(cfg.extra) - EXTRA_KEYS
    if unknown:
        raise ValueError(f"policy.extra: unknown key(s) {sorted(unknown)} for the vllm backend; known: {sorted(EXTRA_KEYS)}")
    args = {"model": cfg.model, "dtype": cfg.dtype, "seed": seed, **dict(cfg.extra.get("engine") or {})}
    if max_context is not None and "max_model_len" not in args:
        args["max_model_len"] = int(max_context)
    return args


class VLLMPolicy(Policy):
    """A model served in-process by vLLM's asynchronous engine (see the module docstring)."""

    name = "vllm"
    async_native = True

    def __init__(self, cfg: Any, *, seed: int = 0, max_context: int | None = None, engine: Any = None,
                 **kw: Any) -> None:
        if not cfg.model and engine is None:
            raise ValueError("policy.model is not set for the vllm backend")
        self.cfg = cfg
        self.seed = seed
        self._vllm = _import_vllm()
        self.engine_args = engine_args(cfg, seed=seed, max_context=max_context)
        self.request_seeds = bool(cfg.extra.get("request_seeds", False))
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._thread.start()
        self.gpu_free_at_start = engine_processes.log_free_gpu_memory(f"starting the vLLM engine for {cfg.model}")
        with engine_processes.new_children(marks=("VLLM", "vllm")) as started:  # vLLM titles its processes
            self.engine = engine if engine is not None else self._on_loop(self._start_engine())
        self.engine_pids = sorted(started)
        self.engine_left: list[int] = []
        used = engine_processes.gpu_memory_of(self.engine_pids) if self.gpu_free_at_start else {}
        if used:
            log.info("vLLM engine for %s: processes %s hold %.1f GiB of GPU memory", cfg.model, self.engine_pids,
                     sum(used.values()) / 2**30)
        self.tokenizer = self.engine.get_tokenizer()
        self._bos = getattr(self.tokenizer, "bos_token", None)
        self._defaults: dict[str, Any] | None = None

    async def _start_engine(self) -> Any:
        args = self._vllm.AsyncEngineArgs(**self.engine_args)
        return self._vllm.AsyncLLMEngine.from_engine_args(args)

    def _on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids; no second BOS when the text already starts with it."""
        add = not (self._bos and prompt.startswith(self._bos))
        return list(self.tokenizer.encode(prompt, add_special_tokens=add))

    def default_sampling(self) -> dict[str, Any]:
        """What the model's generation config sets (vLLM's own reading of it), for the fields a request
        leaves to the engine."""
        if self._defaults is None:
            try:
                self._defaults = dict(self.engine.model_config.get_diff_sampling_param())
            except Exception:  # noqa: BLE001 - an engine without it: vLLM's own defaults
                self._defaults = {}
        return self._defaults

    def sampling_params(self, r: GenerationRequest) -> Any:
        defaults = self.default_sampling()
        top_p = r.top_p if r.top_p is not None else defaults.get("top_p", 1.0)
        top_k = r.top_k if r.top_k is not None else defaults.get("top_k", -1)
        return self._vllm.SamplingParams(
            n=1, temperature=r.temperature, top_p=top_p, top_k=top_k, max_tokens=r.max_new_tokens,
            stop=list(r.stop) or None, seed=r.seed if self.request_seeds else None, include_stop_str_in_output=False,
        )

    async def _one(self, r: GenerationRequest) -> Generation:
        """One request on the engine's loop."""
        if r.max_new_tokens <= 0:
            return Generation("", "length", 0)
        try:
            ids = list(r.prompt_ids) if r.prompt_ids is not None else self.encode_prompt(r.prompt)
            prompt = self._vllm.TokensPrompt(prompt_token_ids=ids)
            final = None
            async for out in self.engine.generate(prompt, self.sampling_params(r), request_id=f"dd-{next(self._ids)}"):
                final = out
            if final is None or not final.outputs:
                return Generation("", "error", 0, error="vLLM returned no output")
            return map_output(final.outputs[0])
        except Exception as err:  # noqa: BLE001 - an item's failure is a result, not an exception
            return Generation("", "error", 0, error=f"{type(err).__name__}: {err}")

    async def agenerate(self, request: GenerationRequest) -> Generation:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._one(request), self._loop))

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        async def all_of() -> list[Generation]:
            return list(await asyncio.gather(*(self._one(r) for r in requests)))

        return self._on_loop(all_of()) if requests else []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": dict(self.engine_args), "request_seeds": self.request_seeds,
                "vllm_version": getattr(self._vllm, "__version__", None)}

    def engine_memory(self) -> dict[str, Any]:
        """What the engine's processes hold now: GPU bytes per pid (NVML) and resident bytes per pid."""
        return {"pids": list(self.engine_pids), "gpu_bytes": engine_processes.gpu_memory_of(self.engine_pids),
                "rss_bytes": engine_processes.rss_of(self.engine_pids)}

    def close(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None and hasattr(engine, "shutdown"):
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
        pids = getattr(self, "engine_pids", [])
        if pids:  # the GPU memory is free only once the EngineCore process has exited
            self.engine_left = engine_processes.wait_gone(pids, timeout=CLOSE_TIMEOUT)
            self.engine_pids = []
