"""One sandbox worker process, as its parent sees it: the process, its pipes, bounded output capture,
and the isolation probe (may this process start namespaced, privilege-dropping workers?).

Used by :class:`dualdistill.sandbox.python_sandbox.PythonSandbox`; the code that runs inside the worker is
``_sandbox_worker.py``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import marshal
import math
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("dualdistill.sandbox.python_sandbox")

MARKER = "\n[... {n} characters omitted ...]\n"
_WORKER = Path(__file__).with_name("worker_main.py")
BOOTSTRAP = (  # python -S -c BOOTSTRAP FD: exec the worker code the parent sends first on FD
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
NS_FLAGS = ("--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--ipc", "--uts")
NS_WORKDIR = "/tmp/sandbox"
_UID_BASE = 1_500_000_000  # sandbox uids: far above real users; one per sandbox, so RLIMIT_NPROC is too
_CONT_BYTES = bytes(range(0x80, 0xC0))  # UTF-8 continuation bytes



def truncate(text: str, cap: int, omitted_extra: int = 0) -> str:
    """Head + marker + tail when ``text`` is longer than ``cap``; ``omitted_extra`` characters were
    dropped earlier (by the worker, whose own marker is then part of the dropped middle)."""
    if len(text) <= cap:
        return text
    half = cap // 2
    head, tail = text[:half], text[len(text) - (cap - half):]
    return head + MARKER.format(n=len(text) - len(head) - len(tail) + omitted_extra) + tail


class Capture:
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
            return truncate(self.head.decode("utf-8", "replace"), self.cap, max(extra, 0))
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
        r = subprocess.run([unshare, *NS_FLAGS, true], capture_output=True, timeout=20,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"unshare failed: {e}"
    if r.returncode != 0:
        return False, f"unshare not permitted: {r.stderr.decode(errors='replace').strip()[:200]}"
    return True, unshare


def warn_once(message: str) -> None:
    with _PROBE_LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def next_uid() -> int:
    with _UID_LOCK:
        n = next(_UID_COUNTER)
    return _UID_BASE + ((os.getpid() & 0xFFFFF) << 8 | (n & 0xFF))


def count_processes(uid: int) -> int:
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


def interpreter_paths(python: str) -> dict[str, Any]:
    """What the worker needs to see after dropping privileges: the interpreter and the project's
    site-packages (numpy, sympy, ...)."""
    sys_path = [p for p in site.getsitepackages() if os.path.isdir(p)]
    expose = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, *sys_path)}
    expose.add(os.path.dirname(os.path.realpath(python)))
    expose.add(os.path.dirname(os.path.abspath(python)))
    return {"sys_path": sys_path, "expose": sorted(expose), "prefix": sys.prefix,
            "exec_prefix": sys.exec_prefix}


# --- one worker process -------------------------------------------------------------------------
class Worker:
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

    def pump(self, deadline: float, out: Capture | None, err: Capture | None) -> dict[str, Any] | str:
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

    def _read(self, fd: int, out: Capture | None, err: Capture | None) -> bool:
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

    def drain(self, out: Capture | None, err: Capture | None, until_eof: float = 0.0) -> None:
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


def finalize(state: dict[str, Any]) -> None:
    worker = state.pop("worker", None)
    if worker is not None:
        worker.close()
    host_dir = state.pop("host_dir", None)
    if host_dir:
        shutil.rmtree(host_dir, ignore_errors=True)
