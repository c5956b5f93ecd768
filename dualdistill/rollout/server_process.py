"""A local HTTP server as a child process: started in its own process group, waited for, stopped whole.

    with ServerProcess(["{python}", "-m", "dualdistill.world.agent_server", "--port", "{port}"]) as server:
        print(server.base_url)                    # http://127.0.0.1:PORT/v1, once GET /v1/models answers

The command's ``{port}``, ``{host}`` and ``{python}`` (the interpreter running this code) are filled in
at start; a free port is picked when none is given. The process runs in its own session, so
:meth:`ServerProcess.stop` ends it and every process it started (SIGTERM, then SIGKILL after a grace
period) and waits until the group is gone; an ``atexit`` hook stops a server left running. Its output
goes to a log file whose tail is quoted in every start-up error. :class:`dualdistill.rollout.backends.vllm_server.VLLMServer`
is this with vLLM's command line; a policy's ``serve`` section (``config.ServeConfig``) is this with the
params' command (``policy.build_policy`` starts it before the policy and stops it when the policy closes).
"""

from __future__ import annotations

import atexit
import json
import os
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
from typing import Any

from dualdistill.common.repository import REPO_ROOT


class ServerError(RuntimeError):
    """A local server could not be started (bad command, crash during start-up, timeout)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A local HTTP server process (see the module docstring); a context manager.

    ``ready_path`` is polled (GET, a JSON answer) until the server is up; ``env`` adds environment
    variables; ``cwd`` defaults to the repository root, so relative paths in the command resolve there."""

    label = "local server"
    error: type[ServerError] = ServerError

    def __init__(self, command: Sequence[str] = (), *, host: str = "127.0.0.1", port: int | None = None,
                 ready_path: str = "/v1/models", env: dict[str, str] | None = None, startup_timeout: float = 120.0,
                 log_path: str | Path | None = None, cwd: str | Path | None = None) -> None:
        self._command = [str(c) for c in command]
        self.host = host
        self.port = port
        self.ready_path = ready_path
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.cwd = Path(cwd) if cwd else REPO_ROOT
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log_file: Any = None

    # --- addresses ---------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.root_url}/v1"

    def command(self) -> list[str]:
        """The command line, placeholders filled in (the port is known once :meth:`start` has picked it)."""
        values = {"port": self.port, "host": self.host, "python": sys.executable}
        try:
            return [c.format(**values) for c in self._command]
        except (KeyError, IndexError, ValueError) as err:
            raise self.error(f"{self.label}: bad placeholder in the command {self._command} ({err!r}); "
                             "known: {port}, {host}, {python}") from None

    # --- hooks for subclasses -------------------------------------------------------------------
    def preflight(self) -> None:
        """Checks before anything is started (a missing interpreter, model dir, ...)."""
        if not self._command:
            raise self.error(f"{self.label}: no command to start")

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def ready(self) -> bool:
        """Does the server answer ``ready_path`` with JSON yet?"""
        return self.get_json(self.ready_path, timeout=2) is not None

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """``GET root_url + path`` as JSON, or None when it does not answer (yet)."""
        try:
            with urllib.request.urlopen(f"{self.root_url}{path}", timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        """Start the server and wait until it is ready; raise :attr:`error` (with the log tail) when it
        exits or does not come up within ``startup_timeout``."""
        if self.proc is not None:
            raise self.error(f"{self.label} already started")
        self.preflight()
        if self.port is None:
            self.port = free_port(self.host)
        command = self.command()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="dualdistill-server-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT,
                                         env=self.child_env(), cwd=str(self.cwd), start_new_session=True)
        except OSError as err:
            self._log_file.close()
            self._log_file = None
            raise self.error(f"{self.label}: cannot run {command[0]!r}: {err}") from None
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
                raise self.error(f"{self.label} exited with code {code} during start-up (log: {self.log_path}):\n"
                                 f"{self.log_tail()}")
            if self.ready():
                return
            if time.monotonic() - t0 > self.startup_timeout:
                raise self.error(f"{self.label} did not answer {self.root_url}{self.ready_path} within "
                                 f"{self.startup_timeout:.0f} s (log: {self.log_path}):\n{self.log_tail()}")
            time.sleep(0.5)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """End the server's whole process group (idempotent)."""
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            # children share the group: end any that outlived the server, and wait until the whole
            # group is gone (so no process of this server is left when stop() returns)
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 15
            while group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "<no log>"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def describe(self) -> dict[str, Any]:
        """What was started, for run reports."""
        return {"command": self.command() if self.port is not None else list(self._command),
                "base_url": self.base_url, "startup_seconds": None if self.startup_seconds is None
                else round(self.startup_seconds, 1), "log": str(self.log_path) if self.log_path else None}

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group id is the server's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """Is any process of the group ``pgid`` still there?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
