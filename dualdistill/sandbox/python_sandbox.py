"""Run model-written Python in an isolated, persistent worker: the executor of the tool loop.

    with PythonSandbox(timeout=3.0, memory_mb=1024, max_processes=16, max_output_chars=4000) as sb:
        sb.run("import math\\nx = math.factorial(20)")
        r = sb.run("print(x % 1000)")   # state persists across calls, like a notebook kernel
        r.status, r.stdout, r.output     # "ok", "0\\n", "0"

``run`` returns an :class:`ExecResult` (status ok / error / timeout / killed) and never raises for
the code's own failures. A warning on stderr is not a failure (METHOD §7). Each sandbox is one
long-lived worker process (``worker_main.py``) that ``exec``s cells in a persistent namespace;
an earlier cell is never re-run, except to restore state after the worker was killed (timeout,
``os._exit``, a signal): then a new worker replays the cells that completed, silently.

What it isolates (namespace mode: root + util-linux ``unshare``, the default here and in CI):
- processes: own PID namespace; every process a call starts is killed when the call ends
  (``kill(-1)`` inside the namespace) or times out (the namespace's init dies) — also children
  that called ``setsid``; the caller's processes are invisible and cannot be signalled;
- privileges: code runs as an unprivileged uid unique to the sandbox (no groups, no capabilities,
  ``no_new_privs``), never as root;
- network: own network namespace with no interfaces up: no internet, no host loopback;
- filesystem: every mount read-only; private, size-capped tmpfs on /tmp (working directory
  /tmp/sandbox), /var/tmp and /dev/shm, an empty /run, and a tmpfs over directories other users
  cannot enter (e.g. /root) with only the interpreter bound back: nothing written persists;
- environment: a clean one (PATH, HOME, locale, single-threaded BLAS): no API keys; stdin is
  /dev/null (``input()`` raises EOFError); own IPC and UTS namespaces;
- limits: wall-clock timeout per call (killed by the parent), RLIMIT_AS (memory), RLIMIT_NPROC
  (processes and threads of the sandbox uid), RLIMIT_CPU per call, RLIMIT_FSIZE, no core files;
  output capped to head + tail with a marker, in the worker and again in the parent.
What it does not isolate:
- files readable by any user stay readable (read-only), e.g. the project and its data, and so do
  /proc and /sys (host facts such as CPUs and memory); unix sockets outside /run and /tmp stay
  connectable where their permissions allow;
- no seccomp filter: every system call is available to an unprivileged user (kernel bugs are
  out of scope), and the code may confuse its own worker (e.g. write to its private pipes);
- CPU time across processes, kernel memory and disk bandwidth are not shared out (no cgroups);
- replay after a kill re-runs earlier cells: non-deterministic code (time, unseeded random)
  may restore a slightly different state.
Start-up is cheap (~15-20 ms: nothing heavy is imported until the code does); ``preload=("numpy",
"sympy")`` imports those when the worker starts, which a pool hides behind generation. Sandboxes
may be used from many threads at once (one per thread or trajectory; calls to one sandbox are
serialised).

Degraded mode (not root, or ``unshare`` not permitted): a warning once, then rlimits, a clean
environment, a private working directory and process-group kill only — no network, filesystem or
PID isolation, the code runs as the caller's user and setsid'd children can outlive a timeout.
``isolation="namespaces"`` raises instead of degrading.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from dualdistill.sandbox.worker_process import (
    BOOTSTRAP,
    NS_FLAGS,
    NS_WORKDIR,
    Capture,
    Worker,
    count_processes,
    finalize,
    interpreter_paths,
    namespaces_available,
    next_uid,
    truncate,
    warn_once,
)

logger = logging.getLogger(__name__)

__all__ = ["ExecResult", "PythonSandbox", "SandboxError", "namespaces_available", "STATUSES"]

STATUSES = ("ok", "error", "timeout", "killed")
TIMEOUT_MESSAGE = "TimeoutError: execution timed out after {timeout} seconds"
KILLED_MESSAGE = "Error: the Python process exited unexpectedly ({why})"
_SCRIPT_GRACE = 5.0  # seconds the parent waits past a script's own limit (writing the file, the kill)
STATE_LOST_NOTICE = "Note: the earlier state could not be restored; variables from previous runs are gone."

class SandboxError(RuntimeError):
    """The sandbox itself failed (cannot start, closed): never raised for the code's own failures."""


@dataclass
class ExecResult:
    """What one ``run`` did. ``output`` is the text for the model's ``<executor>`` block."""

    stdout: str = ""
    stderr: str = ""
    status: str = "ok"  # ok | error (exception, SystemExit != 0) | timeout | killed (process died)
    duration: float = 0.0  # seconds of the whole call, start-up / restore included
    error: str | None = None  # one line: the exception, the timeout, how the process died
    notice: str | None = None  # e.g. state could not be restored after a kill
    max_chars: int | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a script's file and exit status

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def output(self) -> str:
        """stdout, plus stderr (traceback) when the call failed, plus the timeout / kill message."""
        parts = [self.notice] if self.notice else []
        parts.append(self.stdout)
        if self.status != "ok":
            parts.append(self.stderr)
            if self.status in ("timeout", "killed") or not self.stderr.strip():
                parts.append(self.error or "")
        text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip("\n"))
        return truncate(text, self.max_chars) if self.max_chars else text


# --- the sandbox --------------------------------------------------------------------------------
DEFAULT_OWNER = "main"


def _ns(owner: Hashable) -> str:
    return str(owner)


@dataclass
class _OwnerState:
    """One owner's (trajectory's) namespace as the parent knows it."""

    history: list[tuple[str, float]]  # completed cells (code, seconds) for replay
    needs_replay: bool = False
    notice: str | None = None


class PythonSandbox:
    """A persistent, isolated Python worker; see the module docstring for what it isolates.

    Safe to use from several threads (calls are serialised); the intended use is one sandbox per
    thread or per trajectory (:class:`SandboxPool`)."""

    def __init__(
        self,
        timeout: float = 3.0,
        memory_mb: int = 1024,
        max_processes: int = 16,
        max_output_chars: int = 4000,
        *,
        cpu_seconds: float | None = None,
        disk_mb: int = 256,
        isolation: str = "auto",
        uid: int | None = None,
        preload: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        if (timeout <= 0 or (cpu_seconds is not None and cpu_seconds <= 0) or memory_mb < 32
                or max_processes < 1 or max_output_chars < 20 or disk_mb < 1):
            raise ValueError("need timeout > 0, cpu_seconds > 0, memory_mb >= 32, max_processes >= 1, "
                             "max_output_chars >= 20, disk_mb >= 1")
        if isolation not in ("auto", "namespaces", "none"):
            raise ValueError(f"isolation must be auto, namespaces or none, not {isolation!r}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_processes = int(max_processes)
        self.max_output_chars = int(max_output_chars)
        self.disk_mb = int(disk_mb)
        self.cpu_seconds = cpu_seconds  # CPU seconds per call; None: the call's timeout + 1
        self.startup_timeout = float(startup_timeout)
        self.preload = tuple(preload)  # modules the worker imports when it starts (e.g. numpy, sympy)
        self.python = sys.executable  # the worker runs this interpreter and sees its site-packages
        self._requested_isolation = isolation
        self._isolation: str | None = None
        self._uid = uid
        self._lock = threading.RLock()
        self._owners: dict[Hashable, _OwnerState] = {}  # each trajectory's namespace in the worker
        self._closed = False
        self._state: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, finalize, self._state)

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def isolation(self) -> str:
        """"namespaces" or "none" (resolved when the first worker starts)."""
        with self._lock:
            return self._resolve_isolation()

    def start(self) -> PythonSandbox:
        """Start the worker in the background (``run`` does it when needed)."""
        with self._lock:
            self._check_open()
            if self._state.get("worker") is None:
                self._spawn()
        return self

    def reset(self) -> None:
        """Fresh state: a new worker (started now, in the background), no namespace. A sandbox
        that has run nothing since its last start or reset keeps its worker."""
        with self._lock:
            self._check_open()
            self._owners.clear()
            worker = self._state.get("worker")
            if worker is not None and not worker.dirty:
                return
            self._stop_worker()
            if self._isolation == "none":
                self._new_host_dir()
            self._spawn()

    @property
    def owners(self) -> list[Hashable]:
        """The owners (trajectories) whose namespace this sandbox holds."""
        with self._lock:
            return list(self._owners)

    def history(self, owner: Hashable = DEFAULT_OWNER) -> list[tuple[str, float]]:
        """The cells that completed in ``owner``'s namespace (code, seconds): what a replay re-runs."""
        with self._lock:
            state = self._owners.get(owner)
            return list(state.history) if state is not None else []

    def adopt(self, owner: Hashable, history: list[tuple[str, float]]) -> None:
        """Give ``owner`` a namespace rebuilt from ``history`` (replayed silently before its next call)."""
        with self._lock:
            self.drop(owner)
            self._owners[owner] = _OwnerState(list(history), needs_replay=bool(history))

    def drop(self, owner: Hashable) -> None:
        """Forget ``owner``'s namespace (here and in the worker)."""
        with self._lock:
            if self._owners.pop(owner, None) is None:
                return
            worker = self._state.get("worker")
            if worker is not None and worker.ready and worker.proc.poll() is None:
                if worker.send({"op": "drop", "ns": _ns(owner)}):
                    worker.pump(time.monotonic() + self.startup_timeout, None, None)

    def close(self) -> None:
        """Kill the worker (and everything it started) and remove the working directory."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> PythonSandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- running code -------------------------------------------------------------------------
    def _call_timeout(self, name: str, text: object, timeout: float | None) -> float:
        """The checked arguments of a call: ``text`` a str, the timeout (default: the sandbox's) > 0."""
        if not isinstance(text, str):
            raise TypeError(f"{name} must be str, not {type(text).__name__}")
        timeout = self.timeout if timeout is None else float(timeout)
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        return timeout

    def run(self, code: str, timeout: float | None = None, *, owner: Hashable = DEFAULT_OWNER) -> ExecResult:
        """Execute ``code`` in ``owner``'s persistent namespace. Never raises for the code's own
        failures (exceptions, timeouts, crashes of the worker); raises :class:`SandboxError` only if
        the sandbox is closed or cannot start a worker at all."""
        timeout = self._call_timeout("code", code, timeout)
        with self._lock:
            self._check_open()
            t0 = time.monotonic()
            state = self._owners.setdefault(owner, _OwnerState([]))
            worker = self._ready_worker(owner)
            notice, state.notice = state.notice, None
            out, err = Capture(self.max_output_chars), Capture(self.max_output_chars)
            worker.drain(None, None)  # stale output of background threads
            worker.dirty = True
            cpu = self.cpu_seconds if self.cpu_seconds is not None else timeout + 1.0
            sent = worker.send({"op": "run", "code": code, "cpu": cpu, "ns": _ns(owner)})
            reply = worker.pump(time.monotonic() + timeout, out, err) if sent else "eof"
            if isinstance(reply, dict) and reply.get("op") is None:
                worker.drain(out, err)
                omitted = reply.get("omitted") or [0, 0, 0, 0]
                state.history.append((code, float(reply.get("duration", 0.0))))
                return ExecResult(
                    stdout=out.text(omitted[0], omitted[1]), stderr=err.text(omitted[2], omitted[3]),
                    status=reply.get("status", "error"), duration=time.monotonic() - t0,
                    error=reply.get("error"), notice=notice, max_chars=self.max_output_chars,
                )
            if reply == "timeout":
                worker.kill()
                status, error = "timeout", TIMEOUT_MESSAGE.format(timeout=timeout)
            else:  # the worker died (os._exit, a signal, the memory killer) or garbled its pipe
                worker.kill() if isinstance(reply, dict) else None
                status, error = "killed", KILLED_MESSAGE.format(why=worker.exit_reason())
            worker.drain(out, err, until_eof=0.5)
            self._restart()
            return ExecResult(
                stdout=out.text(), stderr=err.text(), status=status, duration=time.monotonic() - t0,
                error=error, notice=notice, max_chars=self.max_output_chars,
            )

    def run_script(self, source: str, timeout: float | None = None, *, after: str | None = None) -> ExecResult:
        """Run ``source`` as a file of its own in a fresh interpreter (``python FILE``, no state kept;
        the file is ``workspace/tmpXXXXXXXX.py`` in the sandbox's working directory, removed after),
        with every limit of the sandbox and ``timeout`` seconds of wall clock for the whole process,
        start-up included. ``after``: stdout is cut to what follows its last occurrence (before the
        output cap). Status ``ok`` (exit 0), ``error`` (another exit status), ``timeout`` (killed at
        the limit: its output is dropped) or ``killed`` (the worker itself died); ``meta`` of the
        result: the file's path and the exit status."""
        timeout = self._call_timeout("source", source, timeout)
        with self._lock:
            self._check_open()
            t0 = time.monotonic()
            worker = self._state.get("worker")
            if worker is not None and worker.ready and worker.proc.poll() is not None:
                self._restart()
            worker = self._state.get("worker") or self._spawn()
            if not worker.ready:
                worker = self._await_ready(worker)
            out, err = Capture(self.max_output_chars), Capture(self.max_output_chars)
            worker.drain(None, None)
            worker.dirty = True
            cpu = self.cpu_seconds if self.cpu_seconds is not None else timeout + 1.0
            sent = worker.send({"op": "script", "source": source, "timeout": timeout, "cpu": cpu, "after": after})
            reply = worker.pump(time.monotonic() + timeout + _SCRIPT_GRACE, out, err) if sent else "eof"
            if isinstance(reply, dict) and reply.get("op") is None:
                worker.drain(out, err)
                omitted = reply.get("omitted") or [0, 0, 0, 0]
                status = reply.get("status", "error")
                return ExecResult(
                    stdout=out.text(omitted[0], omitted[1]), stderr=err.text(omitted[2], omitted[3]), status=status,
                    duration=time.monotonic() - t0,
                    error=TIMEOUT_MESSAGE.format(timeout=timeout) if status == "timeout" else None,
                    max_chars=self.max_output_chars,
                    meta={"path": reply.get("path"), "returncode": reply.get("returncode")},
                )
            worker.kill() if isinstance(reply, (dict, str)) else None
            worker.drain(None, None, until_eof=0.5)
            why = worker.exit_reason()
            self._restart()
            return ExecResult(status="killed", duration=time.monotonic() - t0,
                              error=KILLED_MESSAGE.format(why=why), max_chars=self.max_output_chars)

    # --- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")

    def _resolve_isolation(self) -> str:
        if self._isolation is None:
            if self._requested_isolation == "none":
                self._isolation = "none"
            else:
                ok, reason = namespaces_available()
                if ok:
                    self._isolation = "namespaces"
                elif self._requested_isolation == "namespaces":
                    raise SandboxError(f"namespace isolation unavailable: {reason}")
                else:
                    warn_once(
                        f"sandbox: namespace isolation unavailable ({reason}); running code with rlimits, "
                        "a clean environment and a private directory only: no network, filesystem or PID "
                        "isolation"
                    )
                    self._isolation = "none"
        return self._isolation

    def _new_host_dir(self) -> str:
        old = self._state.pop("host_dir", None)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        self._state["host_dir"] = tempfile.mkdtemp(prefix="dualdistill-sandbox-")
        return self._state["host_dir"]

    def _spawn(self) -> Worker:
        iso = self._resolve_isolation()
        namespaced = iso == "namespaces"
        if namespaced:
            workdir = NS_WORKDIR
            uid = self._uid if self._uid is not None else next_uid()
            self._uid = uid
            argv = [namespaces_available()[1], *NS_FLAGS, self.python, "-S", "-c", BOOTSTRAP]
            cwd = "/"
        else:
            workdir = self._state.get("host_dir") or self._new_host_dir()
            uid = os.getuid()
            argv = [self.python, "-S", "-c", BOOTSTRAP]
            cwd = workdir
        # RLIMIT_NPROC counts every process of the uid: without a uid of its own, leave room for the caller's
        max_processes = self.max_processes + (0 if namespaced else count_processes(uid))
        cfg = {
            "namespaces": namespaced, "uid": uid, "gid": uid, "workdir": workdir,
            "memory_mb": self.memory_mb, "max_processes": max_processes, "disk_mb": self.disk_mb,
            "max_output_chars": self.max_output_chars, "preload": list(self.preload),
            **interpreter_paths(self.python),
        }
        path = os.pathsep.join([os.path.dirname(os.path.abspath(self.python)), "/usr/local/bin", "/usr/bin",
                                "/bin"])
        env = {
            "PATH": path, "HOME": workdir, "TMPDIR": "/tmp" if namespaced else workdir,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "USER": "sandbox", "LOGNAME": "sandbox",
        }
        try:
            worker = Worker(argv, cfg, env, cwd)
        except OSError as e:
            raise SandboxError(f"cannot start the sandbox worker: {e}") from e
        self._state["worker"] = worker
        return worker

    def _stop_worker(self) -> None:
        worker = self._state.pop("worker", None)
        if worker is not None:
            worker.close()

    def _restart(self) -> None:
        """After a kill: a new worker now (in the background); each owner's next call replays its
        history first."""
        self._stop_worker()
        for state in self._owners.values():
            state.needs_replay = bool(state.history)
        self._spawn()

    def _ready_worker(self, owner: Hashable) -> Worker:
        worker = self._state.get("worker")
        if worker is not None and worker.ready and worker.proc.poll() is not None:
            self._restart()  # died between calls (e.g. a thread of the code called os._exit)
        worker = self._state.get("worker") or self._spawn()
        if not worker.ready:
            worker = self._await_ready(worker)
        state = self._owners[owner]
        if state.needs_replay:
            state.needs_replay = False
            if not self._replay(worker, owner, state.history):
                state.history.clear()
                state.notice = STATE_LOST_NOTICE
                self._restart()
                worker = self._await_ready(self._state["worker"])
        return worker

    def _await_ready(self, worker: Worker) -> Worker:
        err = Capture(2000)
        frame = worker.pump(time.monotonic() + self.startup_timeout, None, err)
        if isinstance(frame, dict) and frame.get("op") == "ready":
            worker.ready = True
            for w in frame.get("warnings") or []:
                warn_once(f"sandbox: {w}")
            return worker
        worker.drain(None, err, until_eof=0.5)
        why = frame.get("error") if isinstance(frame, dict) else frame
        self._stop_worker()
        if self._isolation == "namespaces" and self._requested_isolation == "auto":
            warn_once(f"sandbox: namespace set-up failed ({why}); falling back to rlimits and a clean "
                       "environment")
            self._isolation = "none"
            return self._await_ready(self._spawn())
        raise SandboxError(f"the sandbox worker failed to start ({why}): {err.text()[-1500:]}")

    def _replay(self, worker: Worker, owner: Hashable, history: list[tuple[str, float]]) -> bool:
        """Re-run an owner's completed cells silently in a fresh namespace; False if that fails."""
        cells = [code for code, _ in history]
        budget = 2 * sum(d for _, d in history) + 2 * self.timeout + 5.0
        if not worker.send({"op": "replay", "cells": cells, "cpu": budget + 1.0, "ns": _ns(owner)}):
            return False
        reply = worker.pump(time.monotonic() + budget, None, None)
        worker.drain(None, None)
        if isinstance(reply, dict) and reply.get("op") is None:
            if reply.get("failed"):
                logger.info("sandbox replay: %d of %d cells failed again", reply["failed"], len(cells))
            return True
        logger.warning("sandbox: state could not be restored after a kill (%s)", reply)
        return False
