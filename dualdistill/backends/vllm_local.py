"""The ``vllm`` policy backend: in-process ``vllm.LLM`` (GPU; also vllm-cpu), one batched call.

    policy = VLLMPolicy(PolicyConfig(backend="vllm", model="outputs/run/models/S1", dtype="bfloat16"), seed=0)
    gens = policy.generate(requests)   # all requests in one llm.generate call

Needs vllm (``pip install 'dualdistill[gpu]'``; on CPU the ``.venv-vllm`` made by
``scripts/setup_vllm_cpu.sh``). This module imports only the standard library and
:mod:`dualdistill.policy` at import time, so it also loads inside the vllm-cpu venv.

Each request gets ``SamplingParams(n=1, temperature, max_tokens, stop, seed,
include_stop_str_in_output=False)``. Prompts are tokenized here: a prompt that already starts with
the tokenizer's BOS text is encoded without adding another BOS. Output mapping: ``finish_reason``
``"length"`` → ``"length"``; ``"stop"`` with a string ``stop_reason`` → ``"stop"`` (and which
string); ``"stop"`` with ``None`` / a token id → ``"eos"``; anything else (``"abort"``) →
``"error"``. ``token_ids`` are what was sampled (including the stop string's tokens, as vLLM
reports them), without the final EOS token at ``"eos"`` (as the hf backend); ``n_tokens`` counts
everything sampled, EOS included. If the batched call fails, requests are retried one
by one so a single bad request (e.g. a prompt longer than the context) becomes an ``"error"``
item instead of failing the batch. ``cfg.extra["llm_kwargs"]`` goes to ``vllm.LLM`` (e.g.
``{"gpu_memory_utilization": 0.8, "max_model_len": 16384}``).
"""

from __future__ import annotations

import logging
from typing import Any

from dualdistill.policy import Generation, GenerationRequest, Policy

log = logging.getLogger(__name__)
INSTALL_HINT = "the vllm backend needs vllm: pip install 'dualdistill[gpu]' (CPU: scripts/setup_vllm_cpu.sh)"


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


class VLLMPolicy(Policy):
    """A model served in-process by ``vllm.LLM`` (see the module docstring)."""

    name = "vllm"

    def __init__(self, cfg: Any, *, seed: int = 0, llm: Any = None, **kw: Any) -> None:
        if not cfg.model and llm is None:
            raise ValueError("policy.model is not set for the vllm backend")
        self.cfg = cfg
        self.seed = seed
        self._vllm = _import_vllm()
        if llm is None:
            llm_kwargs = {"model": cfg.model, "dtype": cfg.dtype, "seed": seed, **dict(cfg.extra.get("llm_kwargs") or {})}
            llm = self._vllm.LLM(**llm_kwargs)
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self._bos = getattr(self.tokenizer, "bos_token", None)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids; no second BOS when the text already starts with it."""
        add = not (self._bos and prompt.startswith(self._bos))
        return list(self.tokenizer.encode(prompt, add_special_tokens=add))

    def sampling_params(self, r: GenerationRequest) -> Any:
        return self._vllm.SamplingParams(
            n=1, temperature=r.temperature, max_tokens=r.max_new_tokens, stop=list(r.stop) or None,
            seed=r.seed, include_stop_str_in_output=False,
        )

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        live = []
        for i, r in enumerate(requests):
            if r.max_new_tokens <= 0:
                out[i] = Generation("", "length", 0)
            else:
                live.append(i)
        if not live:
            return [g for g in out if g is not None]
        try:
            results = self._generate([requests[i] for i in live])
        except Exception as err:  # noqa: BLE001 - isolate the failing request(s)
            log.warning("vllm: batched generate failed (%s); retrying one by one", err)
            results = []
            for i in live:
                try:
                    results += self._generate([requests[i]])
                except Exception as one_err:  # noqa: BLE001
                    results.append(Generation("", "error", 0, error=f"{type(one_err).__name__}: {one_err}"))
        for i, g in zip(live, results, strict=True):
            out[i] = g
        return [g for g in out if g is not None]

    def _generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        prompts = [{"prompt_token_ids": self.encode_prompt(r.prompt)} for r in requests]
        params = [self.sampling_params(r) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=len(requests) > 8)
        return [map_output(o.outputs[0]) for o in outputs]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass
