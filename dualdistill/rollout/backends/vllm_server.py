"""The ``vllm-server`` backend: a vLLM OpenAI-compatible server process per model, started and stopped by the run.

    cfg = PolicyConfig(backend="vllm-server", model="outputs/run/models/S1", dtype="bfloat16",
                       extra={"python": ".venv-vllm/bin/python", "engine": {"max_num_seqs": 64}})
    with build_policy(cfg, seed=0, max_context=4500) as policy:    # starts the server (~40 s on a CPU)
        trajs = generate_trajectories(policy, items, ...)            # requests one at a time, async

    with VLLMServer("outputs/smoke/S1") as server:                  # a server alone (tests, benchmarks)
        cfg = PolicyConfig(backend="openai", base_url=server.base_url, model=server.model)
    python -m dualdistill.rollout.backends.vllm_server MODEL_DIR [--port 8000] [-- extra vLLM args]

**The server** (:class:`VLLMServer`) runs from its own interpreter (default ``.venv-vllm/bin/python``,
made by ``scripts/setup_vllm_cpu.sh``; vllm-cpu pins torch/transformers versions that differ from the
main venv) as ``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` fails on the vllm-cpu
package name, METHOD §6). Defaults follow the machine: with a GPU, ``--dtype auto`` (the checkpoint's
dtype) and vLLM's own memory settings; on a CPU, ``--dtype float32`` and ``VLLM_CPU_KVCACHE_SPACE=1``
(GiB of KV cache) unless set. It is started in its own process group, so :meth:`VLLMServer.stop` ends
the API server and its engine workers together (SIGTERM, then SIGKILL after a grace period); an
``atexit`` hook stops a server left running. The server's output goes to a log file whose tail is
quoted in every start-up error.

**The backend** (:class:`VLLMServerPolicy`) is for when vLLM cannot live in the interpreter that runs
the pipeline (vLLM's CPU build pins its own torch and transformers: ``.venv-vllm``), and on GPUs for a
server per GPU. It takes what the in-process ``vllm`` backend takes, the same way
(``vllm_local.engine_args``): the model, ``dtype`` (``auto``: the server's default for the machine), the
seed, the engine arguments of ``extra.engine`` (any ``AsyncEngineArgs`` field, given to the server as
flags by :func:`engine_flags`), and ``max_model_len`` = the caller's ``max_context`` (what prompt +
budget need) unless the engine section sets it. Requests then go through
:class:`~dualdistill.rollout.backends.openai_api.OpenAIPolicy` on ``/v1/completions``: one per trajectory
the moment it is ready (``async_native``), sampling settings sent explicitly, token ids in and out
(the model's tokenizer is loaded here from its directory; ids are sent and received, never re-tokenised).

``extra`` keys: ``python`` (the interpreter with vLLM; default ``$DUALDISTILL_VLLM_PYTHON``, else
``.venv-vllm/bin/python`` from the repository root), ``engine``, ``env`` (environment variables for the
server, e.g. ``VLLM_CPU_KVCACHE_SPACE``), ``startup_timeout`` (s, default 600), ``tokenizer`` (``auto``:
the model directory's, when it is one; ``none``: count through the server's ``/tokenize``), and the
``openai`` backend's own keys (``backoff_initial``, ``overall_timeout``, ``extra_body``, ...).
``request_seeds`` (default false: requests carry no seed, the server's ``--seed`` seeds the engine; true:
every request its own, vLLM's slower per-row sampler path). ``base_url`` must be unset (a running
server: use ``backend: openai``). The free GPU memory is logged before each server starts; closing the
policy stops the server's whole process group and waits until it is gone (``ServerProcess.stop``). Without a GPU, chunked
prefill is off unless the engine section says otherwise (:func:`server_engine_args`: a vllm-cpu 0.32 bug).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualdistill.common.repository import REPO_ROOT
from dualdistill.rollout import engine_processes
from dualdistill.rollout.backends.openai_api import EXTRA_KEYS as OPENAI_KEYS
from dualdistill.rollout.backends.openai_api import OpenAIPolicy
from dualdistill.rollout.server_process import ServerError, ServerProcess

# --- the server ---------------------------------------------------------------------------------
DEFAULT_PYTHON = ".venv-vllm/bin/python"
SETUP_HINT = "create it with scripts/setup_vllm_cpu.sh (CPU) or pip install 'dualdistill[gpu]' (GPU)"


class VLLMServerError(ServerError):
    """The vLLM server could not be started (missing interpreter, bad model dir, crash, timeout)."""


def gpu_available() -> bool:
    """Is an NVIDIA GPU visible (the server gets GPU defaults then)?"""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return shutil.which("nvidia-smi") is not None


def resolve_python(python: str | Path) -> Path:
    """The interpreter path: a bare name is looked up on PATH, a relative path is taken from the
    repo root (so ``.venv-vllm/bin/python`` works from any cwd)."""
    p = Path(python)
    if p.is_absolute():
        return p
    if len(p.parts) == 1:
        found = shutil.which(str(p))
        return Path(found) if found else p
    return p if p.exists() else REPO_ROOT / p


def engine_flags(engine: dict[str, Any]) -> list[str]:
    """vLLM engine arguments (``AsyncEngineArgs`` field names, as in-process vLLM takes them) as the
    server's command-line flags: ``max_num_seqs: 8`` → ``--max-num-seqs 8``; ``true`` → the bare flag,
    ``false`` → ``--no-FLAG``; a list → the flag followed by its items; a dict → its JSON; ``null`` → left out."""
    flags: list[str] = []
    for key, value in engine.items():
        if not isinstance(key, str) or not key.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"engine argument {key!r} is not a field name")
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            flags += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


class VLLMServer(ServerProcess):
    """A vLLM OpenAI-compatible server serving ``model_dir`` on ``host:port`` (a context manager).

    ``extra_args`` are appended to the server's command line (e.g. ``["--enforce-eager"]``, or
    :func:`engine_flags` of engine arguments); ``env`` adds environment variables. ``startup_timeout``
    bounds the wait for ``/v1/models`` to list the model.
    """

    label = "vLLM server"
    error = VLLMServerError

    def __init__(
        self,
        model_dir: str | Path,
        port: int | None = None,
        python: str | Path = DEFAULT_PYTHON,
        *,
        host: str = "127.0.0.1",
        dtype: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        served_model_name: str | None = None,
        startup_timeout: float = 300.0,
        log_path: str | Path | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ready_path="/v1/models", env=env, startup_timeout=startup_timeout,
                         log_path=log_path)
        self.model_dir = Path(model_dir)
        self.python = resolve_python(python)
        self.gpu = gpu_available()
        self.dtype = dtype or ("auto" if self.gpu else "float32")
        self.extra_args = list(extra_args)
        self.served_model_name = served_model_name

    @property
    def model(self) -> str:
        """The served model name to put in requests."""
        return self.served_model_name or str(self.model_dir)

    def command(self) -> list[str]:
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--host", self.host, "--port", str(self.port),
            "--dtype", self.dtype,
        ]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        return cmd + self.extra_args

    def preflight(self) -> None:
        if not self.python.exists():
            raise VLLMServerError(f"vLLM interpreter not found: {self.python}; {SETUP_HINT}")
        local = self.model_dir.is_absolute() or self.model_dir.exists() or str(self.model_dir).startswith(".")
        if local and not (self.model_dir / "config.json").is_file():  # else a hub id: vLLM downloads it
            raise VLLMServerError(f"model dir {self.model_dir} has no config.json")

    def child_env(self) -> dict[str, str]:
        env = super().child_env()
        if not self.gpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        return env

    def ready(self) -> bool:
        data = self.get_json("/v1/models", timeout=2)
        return isinstance(data, dict) and any(m.get("id") == self.model for m in data.get("data", []))

    def version(self) -> str | None:
        """The running server's vLLM version (``GET /version``)."""
        data = self.get_json("/version")
        return data.get("version") if isinstance(data, dict) else None

    def __enter__(self) -> VLLMServer:
        self.start()
        return self


# --- the backend --------------------------------------------------------------------------------
PYTHON_ENV = "DUALDISTILL_VLLM_PYTHON"
OWN_KEYS = {"python", "engine", "env", "startup_timeout", "tokenizer", "request_seeds"}
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
        self.send_seeds = bool(cfg.extra.get("request_seeds", False))  # the engine's seed is --seed
        if not self.server.is_running():
            engine_processes.log_free_gpu_memory(f"starting the vLLM server for {cfg.model}")
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
                "request_seeds": self.send_seeds,
                "engine": dict(self.engine_args), "vllm_version": self.vllm_version}

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a model until Ctrl-C (arguments after ``--`` go to vLLM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--python", default=DEFAULT_PYTHON)
    ap.add_argument("--dtype", default=None, help="default: auto with a GPU, float32 on a CPU")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    args = ap.parse_args(argv)
    server = VLLMServer(args.model_dir, args.port, args.python, host=args.host, dtype=args.dtype,
                        extra_args=extra, startup_timeout=args.startup_timeout)
    with server:
        print(f"serving {server.model} at {server.base_url} (started in {server.startup_seconds:.0f} s, log {server.log_path})")
        try:
            while server.is_running():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    print("stopped")


if __name__ == "__main__":
    main()
