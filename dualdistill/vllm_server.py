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
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = ".venv-vllm/bin/python"
SETUP_HINT = "create it with scripts/setup_vllm_cpu.sh (CPU) or pip install 'dualdistill[gpu]' (GPU)"


class VLLMServerError(RuntimeError):
    """The vLLM server could not be started (missing interpreter, bad model dir, crash, timeout)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


class VLLMServer:
    """A vLLM OpenAI-compatible server serving ``model_dir`` on ``host:port`` (a context manager).

    ``extra_args`` are appended to the server's command line (e.g. ``["--enforce-eager"]``);
    ``env`` adds environment variables. ``startup_timeout`` bounds the wait for ``/v1/models``.
    """

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
        self.model_dir = Path(model_dir)
        self.host = host
        self.port = port
        self.python = resolve_python(python)
        self.gpu = gpu_available()
        self.dtype = dtype or ("auto" if self.gpu else "float32")
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.served_model_name = served_model_name
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # --- addresses ---------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``) for :class:`~dualdistill.backends.openai_api.OpenAIPolicy`."""
        return f"{self.root_url}/v1"

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

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> VLLMServer:
        """Start the server and wait until ``/v1/models`` lists the model; raise
        :class:`VLLMServerError` (with the log tail) when it exits or does not come up in time."""
        if self.proc is not None:
            raise VLLMServerError("server already started")
        if not self.python.exists():
            raise VLLMServerError(f"vLLM interpreter not found: {self.python}; {SETUP_HINT}")
        if not (self.model_dir / "config.json").is_file():
            raise VLLMServerError(f"model dir {self.model_dir} has no config.json")
        if self.port is None:
            self.port = free_port(self.host)
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="vllm-server-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if not self.gpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
            cwd=str(REPO_ROOT), start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vLLM server exited with code {code} during start-up (log: {self.log_path}):\n{self.log_tail()}"
                )
            if self._models_ready():
                return
            if time.monotonic() - t0 > self.startup_timeout:
                raise VLLMServerError(
                    f"vLLM server did not answer {self.base_url}/models within {self.startup_timeout:.0f} s "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def _models_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                data = json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return any(m.get("id") == self.model for m in data.get("data", []))

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """End the server's whole process group (idempotent)."""
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            # workers share the group: end any that outlived the API server, and wait until the
            # whole group is gone (so no process of this server is left when stop() returns)
            self._signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 15
            while self._group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group id is the server's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "<no log>"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
