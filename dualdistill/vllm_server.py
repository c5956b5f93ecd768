"""Start and stop a local OpenAI-compatible vLLM server process (tests, benchmarks, users).

    with VLLMServer("outputs/smoke/S1") as server:          # waits until /v1/models answers
        cfg = PolicyConfig(backend="openai", base_url=server.base_url, model=server.model)

    python -m dualdistill.vllm_server MODEL_DIR [--port 8000] [-- extra vLLM args]

The server runs from its own interpreter (default ``.venv-vllm/bin/python``, made by
``scripts/setup_vllm_cpu.sh``; vllm-cpu pins torch/transformers versions that differ from the main
venv) as ``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` fails on the vllm-cpu
package name, METHOD §6). Defaults follow the machine: with a GPU, ``--dtype auto`` (the checkpoint's
dtype) and vLLM's own memory settings; on a CPU, ``--dtype float32`` and ``VLLM_CPU_KVCACHE_SPACE=1``
(GiB of KV cache) unless set. It is started in its own
process group, so :meth:`VLLMServer.stop` ends the API server and its engine workers together
(SIGTERM, then SIGKILL after a grace period); an ``atexit`` hook stops a server left running. The
server's output goes to a log file whose tail is quoted in every start-up error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualdistill.server_process import REPO_ROOT, ServerError, ServerProcess, free_port

__all__ = ["DEFAULT_PYTHON", "VLLMServer", "VLLMServerError", "engine_flags", "free_port", "gpu_available",
           "resolve_python"]

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
