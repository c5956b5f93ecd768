"""The ``vllm-server`` policy backend: a vLLM OpenAI-compatible server started for one model, sampled
through the ``openai`` backend, stopped when the policy closes.

    cfg = PolicyConfig(backend="vllm-server", model="outputs/run/models/S1", dtype="bfloat16",
                       extra={"python": ".venv-vllm/bin/python", "engine": {"max_num_seqs": 64}})
    with build_policy(cfg, seed=0, max_context=4500) as policy:    # starts the server (~40 s on a CPU)
        trajs = generate_trajectories(policy, items, ...)            # requests one at a time, async

For when vLLM cannot live in the interpreter that runs the pipeline (vLLM's CPU build pins its own
torch and transformers: ``.venv-vllm``), and on GPUs for a server per GPU. It takes what the in-process
``vllm`` backend takes, the same way (``vllm_local.engine_args``): the model, ``dtype`` (``auto``: the
server's default for the machine, ``vllm_server.VLLMServer``), the seed, the engine arguments of
``extra.engine`` (any ``AsyncEngineArgs`` field, given to the server as flags by
``vllm_server.engine_flags``), and ``max_model_len`` = the caller's ``max_context`` (what prompt +
budget need) unless the engine section sets it. Requests then go through
:class:`~dualdistill.backends.openai_api.OpenAIPolicy` on ``/v1/completions``: one per trajectory the
moment it is ready (``async_native``), sampling settings sent explicitly, token ids in and out (the
model's tokenizer is loaded here from its directory; ids are sent and received, never re-tokenised).

``extra`` keys: ``python`` (the interpreter with vLLM; default ``$DUALDISTILL_VLLM_PYTHON``, else
``.venv-vllm/bin/python`` from the repository root), ``engine``, ``env`` (environment variables for the
server, e.g. ``VLLM_CPU_KVCACHE_SPACE``), ``startup_timeout`` (s, default 600), ``tokenizer`` (``auto``:
the model directory's, when it is one; ``none``: count through the server's ``/tokenize``), and the
``openai`` backend's own keys (``backoff_initial``, ``overall_timeout``, ``extra_body``, ...).
``base_url`` must be unset (a running server: use ``backend: openai``). Without a GPU, chunked
prefill is off unless the engine section says otherwise (:func:`server_engine_args`: a vllm-cpu 0.32 bug).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dualdistill.backends.openai_api import EXTRA_KEYS as OPENAI_KEYS
from dualdistill.backends.openai_api import OpenAIPolicy
from dualdistill.vllm_server import DEFAULT_PYTHON, VLLMServer, engine_flags, gpu_available

PYTHON_ENV = "DUALDISTILL_VLLM_PYTHON"
OWN_KEYS = {"python", "engine", "env", "startup_timeout", "tokenizer"}
DEFAULT_STARTUP_TIMEOUT = 600.0


def server_engine_args(cfg: Any, *, seed: int, max_context: int | None, gpu: bool = True) -> dict[str, Any]:
    """The engine arguments the server gets: the seed, ``extra.engine``, and ``max_model_len`` from
    ``max_context`` unless set (model and dtype are flags of their own). Without a GPU,
    ``enable_chunked_prefill`` defaults to false: vllm-cpu 0.32 crashes ("CPU Generator does not use
    offset", HTTP 500 for every request after it) when a request with a seed is prefilled in chunks."""
    engine = dict(cfg.extra.get("engine") or {})
    bad = sorted({"model", "dtype"} & set(engine))
    if bad:
        raise ValueError(f"policy.extra.engine: {bad} come from policy.model / policy.dtype, not the engine section")
    args = {"seed": seed, **engine}
    if max_context is not None and "max_model_len" not in args:
        args["max_model_len"] = int(max_context)
    if not gpu:
        args.setdefault("enable_chunked_prefill", False)
    return args


def model_location(model: str) -> str:
    """A local model directory as an absolute path (the server runs elsewhere); a hub id as given."""
    p = Path(model)
    return str(p.resolve()) if p.exists() else model


class VLLMServerPolicy(OpenAIPolicy):
    """A model served by a vLLM server this policy starts and stops (see the module docstring)."""

    name = "vllm-server"

    def __init__(self, cfg: Any, *, seed: int = 0, max_context: int | None = None, tokenizer: Any = None,
                 server: VLLMServer | None = None, **kw: Any) -> None:
        unknown = set(cfg.extra) - OWN_KEYS - OPENAI_KEYS
        if unknown:
            raise ValueError(f"policy.extra: unknown key(s) {sorted(unknown)} for the vllm-server backend; known: "
                             f"{sorted(OWN_KEYS | OPENAI_KEYS)}")
        if not cfg.model:
            raise ValueError("policy.model is not set for the vllm-server backend")
        if cfg.base_url:
            raise ValueError("policy.base_url is set, but the vllm-server backend starts its own server: leave it "
                             "unset, or use backend openai for a server that is already running")
        if cfg.extra.get("tokenizer", "auto") not in ("auto", "none"):
            raise ValueError(f"policy.extra.tokenizer must be auto or none, got {cfg.extra['tokenizer']!r}")
        self.engine_args = server_engine_args(cfg, seed=seed, max_context=max_context,
                                              gpu=server.gpu if server is not None else gpu_available())
        model = model_location(cfg.model)
        python = cfg.extra.get("python") or os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON
        self.server = server or VLLMServer(
            model, python=python, dtype=None if cfg.dtype == "auto" else cfg.dtype,
            extra_args=engine_flags(self.engine_args), env={k: str(v) for k, v in (cfg.extra.get("env") or {}).items()},
            startup_timeout=float(cfg.extra.get("startup_timeout", DEFAULT_STARTUP_TIMEOUT)),
        )
        if not self.server.is_running():
            self.server.start()
        try:
            if tokenizer is None and cfg.extra.get("tokenizer", "auto") == "auto" and Path(model).is_dir():
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(model)
            openai_extra = {k: v for k, v in cfg.extra.items() if k in OPENAI_KEYS}
            openai_extra.setdefault("server", "vllm")
            served_cfg = cfg.model_copy(update={"backend": "openai", "api": "completions", "extra": openai_extra,
                                                "base_url": self.server.base_url, "model": self.server.model})
            super().__init__(served_cfg, tokenizer=tokenizer, seed=seed)
            self.vllm_version = self.server.version()
        except BaseException:
            self.server.stop()
            raise
        self.served = self.server

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "python": str(self.server.python), "dtype": self.server.dtype,
                "engine": dict(self.engine_args), "vllm_version": self.vllm_version}

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()
