"""Run model-written Python in an isolated, persistent worker: the executor of the tool loop.

    with PythonSandbox(timeout=3.0, memory_mb=1024, max_processes=16, max_output_chars=4000) as sb:
        sb.run("import math\\nx = math.factorial(20)")
        r = sb.run("print(x % 1000)")   # state persists across calls, like a notebook kernel
        r.status, r.stdout, r.output     # "ok", "0\\n", "0"

    pool = SandboxPool(4, timeout=3.0)   # one sandbox per concurrent trajectory
    with pool.acquire() as sb:           # handed back reset (fresh state) for the next trajectory
        sb.run(code)

``run`` returns an :class:`ExecResult` (status ok / error / timeout / killed) and never raises for
the code's own failures. A warning on stderr is not a failure (DESIGN §7). Each sandbox is one
long-lived worker process (``_sandbox_worker.py``) that ``exec``s cells in a persistent namespace;
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

import fcntl
import json
import logging
import marshal
import math
import os
import queue
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ExecResult", "PythonSandbox", "SandboxPool", "SandboxError", "namespaces_available", "STATUSES"]

STATUSES = ("ok", "error", "timeout", "killed")
TIMEOUT_MESSAGE = "TimeoutError: execution timed out after {timeout} seconds"
KILLED_MESSAGE = "Error: the Python process exited unexpectedly ({why})"
STATE_LOST_NOTICE = "Note: the earlier state could not be restored; variables from previous runs are gone."
MARKER = "\n[... {n} characters omitted ...]\n"

_WORKER = Path(__file__).with_name("_sandbox_worker.py")
_BOOTSTRAP = (  # python -S -c _BOOTSTRAP FD: exec the worker code the parent sends first on FD
    "import marshal, os, sys\n"
    "fd = int(sys.argv[1])\n"
    "def _read(n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        c = os.read(fd, n - len(b))\n"
    "        if not c:\n"
    "            raise SystemExit(71)\n"
    "        b += c\n"
    "    return b\n"
    "code, cfg = marshal.loads(_read(int.from_bytes(_read(4), 'big')))\n"
    "del _read\n"
    "exec(code)\n"
    "main(cfg)\n"
)
_CODE: list[Any] = []  # the worker compiled once per process
_NS_FLAGS = ("--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--ipc", "--uts")
_NS_WORKDIR = "/tmp/sandbox"
_UID_BASE = 1_500_000_000  # sandbox uids: far above real users; one per sandbox, so RLIMIT_NPROC is too
_CONT_BYTES = bytes(range(0x80, 0xC0))  # UTF-8 continuation bytes


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
        return _truncate(text, self.max_chars) if self.max_chars else text


def _truncate(text: str, cap: int, omitted_extra: int = 0) -> str:
    """Head + marker + tail when ``text`` is longer than ``cap``; ``omitted_extra`` characters were
    dropped earlier (by the worker, whose own marker is then part of the dropped middle)."""
    if len(text) <= cap:
        return text
    half = cap // 2
    head, tail = text[:half], text[len(text) - (cap - half):]
    return head + MARKER.format(n=len(text) - len(head) - len(tail) + omitted_extra) + tail


class _Capture:
    """Head and tail of a byte stream in bounded memory; text is capped to ``cap`` characters."""

    def __init__(self, cap: int) -> None:
        self.cap, self.limit = cap, 4 * cap + 16
        self.head, self.tail = bytearray(), bytearray()
        self.chars = 0

    def feed(self, data: bytes) -> None:
        self.chars += len(data.translate(None, _CONT_BYTES))
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.limit:
                del self.tail[: -self.limit]

    def text(self, worker_omitted: int = 0, worker_marker: int = 0) -> str:
        """The capped text; ``worker_omitted`` characters were already dropped by the worker, which
        wrote a marker of ``worker_marker`` characters in their place."""
        extra = worker_omitted - worker_marker if worker_omitted else 0
        if not self.tail:
            return _truncate(self.head.decode("utf-8", "replace"), self.cap, max(extra, 0))
        half = self.cap // 2
        head = self.head.decode("utf-8", "replace")[:half]
        tail = self.tail.decode("utf-8", "replace")[-(self.cap - half):]
        return head + MARKER.format(n=max(self.chars - len(head) - len(tail) + extra, 0)) + tail


# --- isolation probe ----------------------------------------------------------------------------
_PROBE: dict[str, Any] = {}
_PROBE_LOCK = threading.Lock()
_WARNED: set[str] = set()
_UID_COUNTER = iter(range(1 << 30))
_UID_LOCK = threading.Lock()


def namespaces_available() -> tuple[bool, str]:
    """(available, reason): can this process start namespaced, privilege-dropping workers?"""
    with _PROBE_LOCK:
        if "result" not in _PROBE:
            _PROBE["result"] = _probe()
        return _PROBE["result"]


def _probe() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, "not running as root (unshare and the uid drop need root)"
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    true = shutil.which("true") or "/bin/true"
    if not os.path.exists(unshare):
        return False, "util-linux unshare not found"
    try:
        r = subprocess.run([unshare, *_NS_FLAGS, true], capture_output=True, timeout=20,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"unshare failed: {e}"
    if r.returncode != 0:
        return False, f"unshare not permitted: {r.stderr.decode(errors='replace').strip()[:200]}"
    return True, unshare


def _warn_once(message: str) -> None:
    with _PROBE_LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _next_uid() -> int:
    with _UID_LOCK:
        n = next(_UID_COUNTER)
    return _UID_BASE + ((os.getpid() & 0xFFFFF) << 8 | (n & 0xFF))


def _count_processes(uid: int) -> int:
    """Processes and threads of ``uid`` now (what RLIMIT_NPROC counts); best effort."""
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}")
                if st.st_uid == uid:
                    n += max(1, len(os.listdir(f"/proc/{entry}/task")))
            except OSError:
                continue
    return n


def _worker_code() -> Any:
    with _UID_LOCK:
        if not _CODE:
            _CODE.append(compile(_WORKER.read_text(), str(_WORKER), "exec"))
        return _CODE[0]


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _interpreter_paths(python: str) -> dict[str, Any]:
    """What the worker needs to see after dropping privileges: the interpreter and the project's
    site-packages (numpy, sympy, ...)."""
    sys_path = [p for p in site.getsitepackages() if os.path.isdir(p)]
    expose = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, *sys_path)}
    expose.add(os.path.dirname(os.path.realpath(python)))
    expose.add(os.path.dirname(os.path.abspath(python)))
    return {"sys_path": sys_path, "expose": sorted(expose), "prefix": sys.prefix,
            "exec_prefix": sys.exec_prefix}


# --- one worker process -------------------------------------------------------------------------
class _Worker:
    """The parent's handles on one worker process: the process and four pipes."""

    def __init__(self, argv: list[str], cfg: dict[str, Any], env: dict[str, str], cwd: str) -> None:
        self.namespaced = bool(cfg["namespaces"])
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        cfg = {**cfg, "req_fd": req_r, "rep_fd": rep_w}
        boot = _frame(marshal.dumps((_worker_code(), cfg)))
        try:
            for fd in (out_w, err_w):
                try:
                    fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups for large output
                except OSError:
                    pass
            self.proc = subprocess.Popen(
                [*argv, str(req_r)], stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                pass_fds=(req_r, rep_w), env=env, cwd=cwd, start_new_session=True, close_fds=True,
            )
        except BaseException:
            for fd in (self.req_w, self.rep_r, self.out_r, self.err_r):
                os.close(fd)
            raise
        finally:
            for fd in (req_r, rep_w, out_w, err_w):
                os.close(fd)
        self._write(boot)  # < the pipe's 64 KiB buffer: never blocks
        for fd in (self.rep_r, self.out_r, self.err_r):
            os.set_blocking(fd, False)
        self.poll = select.poll()
        self.open = {self.rep_r, self.out_r, self.err_r}
        for fd in self.open:
            self.poll.register(fd, select.POLLIN)
        self.buf = bytearray()
        self.ready = False
        self.dirty = False

    def send(self, obj: dict[str, Any]) -> bool:
        """A request (marshal: the worker trusts its parent, and needs no json import)."""
        return self._write(_frame(marshal.dumps(obj)))

    def _write(self, data: bytes) -> bool:
        try:
            view = memoryview(data)
            while view:  # blocking write; the worker reads requests promptly
                view = view[os.write(self.req_w, view):]
        except OSError:
            return False
        return True

    def frame(self) -> dict[str, Any] | None:
        if len(self.buf) < 4:
            return None
        n = int.from_bytes(self.buf[:4], "big")
        if len(self.buf) < 4 + n:
            return None
        body = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        try:
            obj = json.loads(body)
        except ValueError:
            return {"op": "garbled"}
        return obj if isinstance(obj, dict) else {"op": "garbled"}

    def pump(self, deadline: float, out: _Capture | None, err: _Capture | None) -> dict[str, Any] | str:
        """Read until a reply frame ("frame" dict), the deadline ("timeout") or the worker's end ("eof")."""
        while True:
            got = self.frame()
            if got is not None:
                return got
            if self.rep_r not in self.open:
                return "eof"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            for fd, _ in self.poll.poll(max(1, math.ceil(min(remaining, 1.0) * 1000))):
                self._read(fd, out, err)

    def _read(self, fd: int, out: _Capture | None, err: _Capture | None) -> bool:
        """One read from ``fd``; False when it had nothing (now or ever again)."""
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.open.discard(fd)
            self.poll.unregister(fd)
            return False
        if fd == self.rep_r:
            self.buf += data
        else:
            capture = out if fd == self.out_r else err
            if capture is not None:
                capture.feed(data)
        return True

    def drain(self, out: _Capture | None, err: _Capture | None, until_eof: float = 0.0) -> None:
        """Read what the output pipes hold now; with ``until_eof``, wait up to that long for their end."""
        deadline = time.monotonic() + until_eof
        while True:
            for fd in (self.out_r, self.err_r):
                while fd in self.open and self._read(fd, out, err):
                    pass
            pending = [fd for fd in (self.out_r, self.err_r) if fd in self.open]
            if not until_eof or not pending or time.monotonic() >= deadline:
                return
            select.select(pending, [], [], max(0.0, deadline - time.monotonic()))

    def kill(self) -> None:
        """SIGKILL everything and return once it is gone. With namespaces: ``unshare`` and the
        namespace's init; init turns zombie only after every process of its namespace is gone."""
        init = self._child_pid() if self.namespaced and self.proc.poll() is None else None
        if self.proc.poll() is None:
            try:  # unshare first: killed, it cannot print about its child's death into our stderr pipe
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if init is not None:
            try:
                os.kill(init, signal.SIGKILL)
            except ProcessLookupError:
                init = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("sandbox worker %d did not die after SIGKILL", self.proc.pid)
        deadline = time.monotonic() + 5.0
        while init is not None and time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.001)

    def _child_pid(self) -> int | None:
        """Host pid of unshare's child (the namespace's init)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return int(children[0]) if children else None
        except (OSError, ValueError):
            pass
        for entry in os.listdir("/proc"):  # kernels without /proc/.../children
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    return int(entry)
        return None

    def exit_reason(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        if rc is None:
            return "unknown exit"
        if rc < 0 or rc > 128:
            num = -rc if rc < 0 else rc - 128
            try:
                return f"killed by signal {num} ({signal.Signals(num).name})"
            except ValueError:
                return f"killed by signal {num}"
        return f"exit code {rc}"

    def close(self) -> None:
        self.kill()
        for fd in (self.req_w, self.rep_r, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass


def _finalize(state: dict[str, Any]) -> None:
    worker = state.pop("worker", None)
    if worker is not None:
        worker.close()
    host_dir = state.pop("host_dir", None)
    if host_dir:
        shutil.rmtree(host_dir, ignore_errors=True)


# --- the sandbox --------------------------------------------------------------------------------
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
        self._history: list[tuple[str, float]] = []  # completed cells (code, seconds) for replay
        self._needs_replay = False
        self._notice: str | None = None
        self._closed = False
        self._state: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, _finalize, self._state)

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
        """Fresh state: a new worker (started now, in the background), empty history. A sandbox
        that has run nothing since its last start or reset keeps its worker."""
        with self._lock:
            self._check_open()
            self._history.clear()
            self._needs_replay = False
            self._notice = None
            worker = self._state.get("worker")
            if worker is not None and not worker.dirty:
                return
            self._stop_worker()
            if self._isolation == "none":
                self._new_host_dir()
            self._spawn()

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
    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Execute ``code`` in the persistent namespace. Never raises for the code's own failures
        (exceptions, timeouts, crashes of the worker); raises :class:`SandboxError` only if the
        sandbox is closed or cannot start a worker at all."""
        if not isinstance(code, str):
            raise TypeError(f"code must be str, not {type(code).__name__}")
        timeout = self.timeout if timeout is None else float(timeout)
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        with self._lock:
            self._check_open()
            t0 = time.monotonic()
            worker = self._ready_worker()
            notice, self._notice = self._notice, None
            out, err = _Capture(self.max_output_chars), _Capture(self.max_output_chars)
            worker.drain(None, None)  # stale output of background threads
            worker.dirty = True
            cpu = self.cpu_seconds if self.cpu_seconds is not None else timeout + 1.0
            sent = worker.send({"op": "run", "code": code, "cpu": cpu})
            reply = worker.pump(time.monotonic() + timeout, out, err) if sent else "eof"
            if isinstance(reply, dict) and reply.get("op") is None:
                worker.drain(out, err)
                omitted = reply.get("omitted") or [0, 0, 0, 0]
                self._history.append((code, float(reply.get("duration", 0.0))))
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
                    _warn_once(
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

    def _spawn(self) -> _Worker:
        iso = self._resolve_isolation()
        namespaced = iso == "namespaces"
        if namespaced:
            workdir = _NS_WORKDIR
            uid = self._uid if self._uid is not None else _next_uid()
            self._uid = uid
            argv = [namespaces_available()[1], *_NS_FLAGS, self.python, "-S", "-c", _BOOTSTRAP]
            cwd = "/"
        else:
            workdir = self._state.get("host_dir") or self._new_host_dir()
            uid = os.getuid()
            argv = [self.python, "-S", "-c", _BOOTSTRAP]
            cwd = workdir
        # RLIMIT_NPROC counts every process of the uid: without a uid of its own, leave room for the caller's
        max_processes = self.max_processes + (0 if namespaced else _count_processes(uid))
        cfg = {
            "namespaces": namespaced, "uid": uid, "gid": uid, "workdir": workdir,
            "memory_mb": self.memory_mb, "max_processes": max_processes, "disk_mb": self.disk_mb,
            "max_output_chars": self.max_output_chars, "preload": list(self.preload),
            **_interpreter_paths(self.python),
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
            worker = _Worker(argv, cfg, env, cwd)
        except OSError as e:
            raise SandboxError(f"cannot start the sandbox worker: {e}") from e
        self._state["worker"] = worker
        return worker

    def _stop_worker(self) -> None:
        worker = self._state.pop("worker", None)
        if worker is not None:
            worker.close()

    def _restart(self) -> None:
        """After a kill: a new worker now (in the background); the next call replays the history."""
        self._stop_worker()
        self._needs_replay = bool(self._history)
        self._spawn()

    def _ready_worker(self) -> _Worker:
        worker = self._state.get("worker")
        if worker is not None and worker.ready and worker.proc.poll() is not None:
            self._restart()  # died between calls (e.g. a thread of the code called os._exit)
        worker = self._state.get("worker") or self._spawn()
        if not worker.ready:
            worker = self._await_ready(worker)
        if self._needs_replay:
            self._needs_replay = False
            if not self._replay(worker):
                self._history.clear()
                self._notice = STATE_LOST_NOTICE
                self._stop_worker()
                worker = self._await_ready(self._spawn())
        return worker

    def _await_ready(self, worker: _Worker) -> _Worker:
        err = _Capture(2000)
        frame = worker.pump(time.monotonic() + self.startup_timeout, None, err)
        if isinstance(frame, dict) and frame.get("op") == "ready":
            worker.ready = True
            for w in frame.get("warnings") or []:
                _warn_once(f"sandbox: {w}")
            return worker
        worker.drain(None, err, until_eof=0.5)
        why = frame.get("error") if isinstance(frame, dict) else frame
        self._stop_worker()
        if self._isolation == "namespaces" and self._requested_isolation == "auto":
            _warn_once(f"sandbox: namespace set-up failed ({why}); falling back to rlimits and a clean "
                       "environment")
            self._isolation = "none"
            return self._await_ready(self._spawn())
        raise SandboxError(f"the sandbox worker failed to start ({why}): {err.text()[-1500:]}")

    def _replay(self, worker: _Worker) -> bool:
        """Re-run the completed cells silently in a fresh worker; False if that fails."""
        cells = [code for code, _ in self._history]
        budget = 2 * sum(d for _, d in self._history) + 2 * self.timeout + 5.0
        if not worker.send({"op": "replay", "cells": cells, "cpu": budget + 1.0}):
            return False
        reply = worker.pump(time.monotonic() + budget, None, None)
        worker.drain(None, None)
        if isinstance(reply, dict) and reply.get("op") is None:
            if reply.get("failed"):
                logger.info("sandbox replay: %d of %d cells failed again", reply["failed"], len(cells))
            return True
        logger.warning("sandbox: state could not be restored after a kill (%s)", reply)
        return False


# --- a pool for concurrent trajectories ---------------------------------------------------------
class SandboxPool:
    """``size`` sandboxes, started now; ``acquire()`` lends one and resets it when it comes back."""

    def __init__(self, size: int, **sandbox_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self._kwargs = sandbox_kwargs
        self._idle: queue.Queue[PythonSandbox] = queue.Queue()
        self._all: list[PythonSandbox] = []
        self._closed = False
        for _ in range(size):
            sb = PythonSandbox(**sandbox_kwargs)
            self._all.append(sb)
            self._idle.put(sb.start())

    @contextmanager
    def acquire(self, timeout: float | None = None) -> Iterator[PythonSandbox]:
        """A sandbox with fresh state for one trajectory; blocks while all are lent out."""
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        try:
            sb = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no sandbox free within {timeout} s") from None
        try:
            yield sb
        finally:
            self._release(sb)

    def _release(self, sb: PythonSandbox) -> None:
        if self._closed:
            sb.close()
            return
        try:
            sb.reset()
        except SandboxError:  # closed by its user, or its worker cannot start: replace it
            self._all.remove(sb)
            sb.close()
            sb = PythonSandbox(**self._kwargs)
            self._all.append(sb)
            try:
                sb.start()
            except SandboxError as e:
                logger.warning("sandbox pool: a replacement sandbox cannot start: %s", e)
        self._idle.put(sb)

    def close(self) -> None:
        self._closed = True
        for sb in self._all:
            sb.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
