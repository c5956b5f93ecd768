"""The process behind :class:`dualdistill.sandbox.python_sandbox.PythonSandbox` (never imported by the package).

    [unshare --net --pid --fork --kill-child --mount --mount-proc --ipc --uts] python -S -c BOOTSTRAP FD

The parent compiles this file once and sends ``marshal.dumps((code, config))`` as the first frame
on the request pipe ``FD``; the few-line ``BOOTSTRAP`` (``sandbox._BOOTSTRAP``) execs it and calls
``main(config)``: no source is compiled and nothing heavy is imported at start-up.

With namespaces this process starts as root and PID 1 of fresh PID, network, mount, IPC and UTS
namespaces. As root it makes every mount read-only, puts private tmpfs on /tmp, /var/tmp, /dev/shm
and /run, makes the interpreter reachable (a tmpfs over a directory other users cannot enter, e.g.
/root, with only the interpreter's directories bound back), then forks the worker (PID 2) and
stays as init: it reaps orphans and exits with the worker, which kills the whole namespace.
The worker drops to the sandbox uid (no groups, no capabilities, no_new_privs), sets rlimits and
serves requests until its request pipe closes. Without namespaces the same script is the worker.

Protocol: length-prefixed (4-byte big-endian) frames; requests are marshal (from the trusted
parent), replies JSON (the parent never unmarshals what sandboxed code could forge). Requests
``{"op": "run", "code", "cpu", "ns"}``, ``{"op": "replay", "cells", "cpu", "ns"}`` (into a fresh
namespace), ``{"op": "drop", "ns"}`` and ``{"op": "script", "source", "timeout", "cpu", "after"}`` (the
source written to ``workspace/tmpXXXXXXXX.py`` and run by a fresh interpreter as ``python FILE``, its
own wall-clock ``timeout`` inside; stdout cut to what follows the last ``after``, if given); replies ``{"status", "error", "duration", "omitted"}``,
after a first ``{"op": "ready", ...}``. Each ``ns`` (one trajectory) has a ``__main__`` module of
its own and its own state of the global random generators (``random``, ``numpy.random``), swapped
in when its cell runs; a new namespace starts them freshly seeded, as a fresh process would. User stdout/stderr are
the inherited fds 1 and 2 (pipes read by the parent), so output of subprocesses is captured too.
"""

import marshal
import os
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
PR_SET_NO_NEW_PRIVS = 38
RW_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")  # private and writable
HIDDEN = ("/run",)  # private and empty (host sockets live there)
MARKER = "\n[... {n} characters omitted ...]\n"
_SELF = sys._getframe().f_code.co_filename  # frames of this file are cut from tracebacks


# --- framing ------------------------------------------------------------------------------------
def read_frame(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "big"))
    return None if body is None else marshal.loads(body)


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def write_frame(fd, obj):
    data = to_json(obj).encode("utf-8", "replace")
    _write_all(fd, len(data).to_bytes(4, "big") + data)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def to_json(obj):
    """JSON for the reply's few types (importing json would cost start-up time)."""
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, str):
        return '"' + "".join(_ESCAPES.get(c) or (c if c >= " " else f"\\u{ord(c):04x}") for c in obj) + '"'
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(map(to_json, obj)) + "]"
    return "{" + ",".join(f"{to_json(str(k))}:{to_json(v)}" for k, v in obj.items()) + "}"


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- namespace set-up (root, PID 1) --------------------------------------------------------------
def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _mount(src, target, fstype, flags, data=None):
    ctypes, libc = _libc()
    enc = (lambda s: None if s is None else s.encode())  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _blocker(path):
    """The first ancestor of ``path`` that other users cannot traverse (None if all can)."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        try:
            if not os.stat(d).st_mode & 0o001:
                return d
        except OSError:
            return None
    return None


def _under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def setup_namespace(cfg, warnings):
    os.umask(0o022)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    expose = [os.path.realpath(p) for p in cfg["expose"] if os.path.isdir(p)]
    overlays = [d for d in RW_TMPFS + HIDDEN if os.path.isdir(d) and not os.path.islink(d)]
    for p in expose:  # e.g. /root: only the interpreter's directories come back
        b = _blocker(p)
        if b and b != p and b not in overlays:
            overlays.append(b)
        elif b == p:
            warnings.append(f"{p} is not readable by other users; the sandbox may not import from it")
    keep = sorted({p for p in expose if any(_under(p, o) for o in overlays)})
    keep = [p for p in keep if not any(q != p and _under(p, q) for q in keep)]
    handles = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    disk = f"size={cfg['disk_mb']}m"
    for d in sorted(overlays, key=len):
        opts = f"{disk},mode=1777" if d in RW_TMPFS else "size=1m,mode=755"
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for p, fd in handles.items():
        os.makedirs(p, 0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
        os.close(fd)
    _remount_read_only(warnings)
    os.makedirs(cfg["workdir"], 0o700, exist_ok=True)
    os.chown(cfg["workdir"], cfg["uid"], cfg["gid"])


def _remount_read_only(warnings):
    writable = set(RW_TMPFS)
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    for row in rows:
        target = row[4]
        for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            target = target.replace(code, char)
        if target in writable or _under(target, "/proc") or (_under(target, "/dev") and target != "/dev"):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID  # MS_BIND: per-mount flags only, never the fs
        for opt in row[5].split(","):
            flags |= _MOUNT_FLAGS.get(opt, 0)
        try:
            _mount(None, target, None, flags)
        except OSError as e:
            if target == "/":
                warnings.append(f"could not make / read-only: {e}")


def init_loop(child, keep_fds):
    """PID 1: reap everything; exit with the worker (the kernel then kills the namespace)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for fd in keep_fds:
        os.close(fd)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def drop_privileges(cfg):
    _, libc = _libc()
    os.setgroups([])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise SystemExit("sandbox: failed to drop root privileges")


def set_limits(cfg, warnings):
    import resource

    mib = 1024 * 1024
    limits = [("RLIMIT_AS", cfg["memory_mb"] * mib), ("RLIMIT_CORE", 0),
              ("RLIMIT_FSIZE", cfg["disk_mb"] * mib)]
    if os.getuid() != 0:  # not enforced for root; counts every process of the uid
        limits.append(("RLIMIT_NPROC", cfg["max_processes"]))
    for name, value in limits:
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError) as e:
            warnings.append(f"{name} not set: {e}")


# --- the worker ---------------------------------------------------------------------------------
class CappedStream:
    """sys.stdout / sys.stderr during a cell: writes straight to the fd (no buffering, so order with
    subprocess output is kept); past ``cap // 2`` characters keeps only the last ``cap // 2``."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, fd, cap):
        self.fd, self.half = fd, max(1, cap // 2)
        self.head_left = self.half
        self.tail, self.tail_len, self.omitted, self.marker_len = [], 0, 0, 0
        self.buffer = _RawStream(fd)

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self.head_left > 0:
            part = s[: self.head_left]
            _write_all(self.fd, part.encode("utf-8", "replace"))
            self.head_left -= len(part)
            s = s[len(part):]
        if s:
            self.tail.append(s)
            self.tail_len += len(s)
            if self.tail_len > 4 * self.half:
                joined = "".join(self.tail)
                self.omitted += len(joined) - self.half
                self.tail, self.tail_len = [joined[-self.half:]], self.half
        return n

    def finish(self):
        tail = "".join(self.tail)
        if len(tail) > self.half:
            self.omitted += len(tail) - self.half
            tail = tail[-self.half:]
        if self.omitted:
            marker = MARKER.format(n=self.omitted)
            self.marker_len = len(marker)
            _write_all(self.fd, marker.encode())
        if tail:
            _write_all(self.fd, tail.encode("utf-8", "replace"))
        self.tail, self.tail_len = [], 0

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def fileno(self):
        return self.fd

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False


class _RawStream:
    def __init__(self, fd):
        self.fd = fd

    def write(self, data):
        _write_all(self.fd, bytes(data))
        return len(data)

    def flush(self):
        pass


class Worker:
    def __init__(self, cfg, warnings):
        import builtins

        self.req, self.rep = cfg["req_fd"], cfg["rep_fd"]
        os.set_inheritable(self.req, False)
        os.set_inheritable(self.rep, False)
        self.cap = cfg["max_output_chars"]
        self.namespaces = cfg["namespaces"]
        self.pid = os.getpid()
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.std_fds = os.dup(1), os.dup(2)  # restored before every cell, whatever the code did to 0-2
        os.dup2(self.devnull, 0)  # input() sees EOF
        self.builtins = builtins
        self.spaces = {}  # ns -> {"main": its __main__ module, "rng": saved generator states}
        self.current = None
        self.main = None
        builtins.exit = builtins.quit = sys.exit  # site is not imported (-S)
        sys.argv = [""]
        sys.stdout, sys.stderr = (  # between cells (background threads)
            open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False) for fd in (1, 2)
        )
        write_frame(self.rep, {"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "warnings": warnings})

    def serve(self):
        while True:
            req = read_frame(self.req)
            if req is None:
                os._exit(0)
            if req["op"] == "run":
                self.enter(req.get("ns", ""))
                reply = self.run_cell(req["code"], req["cpu"], silent=False)
            elif req["op"] == "replay":
                self.drop(req.get("ns", ""))
                self.enter(req.get("ns", ""))
                failed = 0
                for code in req["cells"]:
                    failed += self.run_cell(code, req["cpu"], silent=True)["status"] != "ok"
                    self.kill_strays()
                reply = {"status": "ok", "failed": failed}
            elif req["op"] == "drop":
                self.drop(req.get("ns", ""))
                reply = {"status": "ok"}
            elif req["op"] == "script":
                reply = self.run_script(req["source"], req["timeout"], req["cpu"], req.get("after"))
            else:
                reply = {"status": "error", "error": f"unknown op {req['op']!r}"}
            self.kill_strays()
            write_frame(self.rep, reply)

    def enter(self, ns):
        """Make ``ns`` the namespace cells run in: its __main__ and its random generators."""
        if ns == self.current:
            return
        if self.current in self.spaces:
            self.spaces[self.current]["rng"] = self._rng_state()
        space = self.spaces.get(ns)
        if space is None:
            main = type(sys)("__main__")  # functions defined in cells pickle as __main__.f
            main.__dict__["__builtins__"] = self.builtins
            space = self.spaces[ns] = {"main": main, "rng": None}
        self.main = space["main"]
        sys.modules["__main__"] = self.main
        self._set_rng(space["rng"])
        self.current = ns

    def drop(self, ns):
        self.spaces.pop(ns, None)
        if self.current == ns:
            self.current = None

    @staticmethod
    def _rng_state():
        state = {}
        if "random" in sys.modules:
            state["random"] = sys.modules["random"].getstate()
        np_random = getattr(sys.modules.get("numpy"), "random", None)
        if np_random is not None:
            state["numpy"] = np_random.get_state()
        return state

    @staticmethod
    def _set_rng(state):
        """A namespace's saved generator states; fresh seeds for generators it has not used yet."""
        state = state or {}
        if "random" in sys.modules:
            r = sys.modules["random"]
            r.setstate(state["random"]) if "random" in state else r.seed()
        np_random = getattr(sys.modules.get("numpy"), "random", None)
        if np_random is not None:
            np_random.set_state(state["numpy"]) if "numpy" in state else np_random.seed()

    def kill_strays(self):
        """Processes a cell started do not outlive it (only with a PID namespace: there kill(-1)
        reaches this sandbox's processes and nothing else)."""
        if not self.namespaces:
            return
        import signal

        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except (ChildProcessError, OSError):
                return
            if pid == 0:
                return

    def run_cell(self, code, cpu, silent):
        self._cpu_limit(cpu)
        os.dup2(self.devnull, 0)
        os.dup2(self.devnull if silent else self.std_fds[0], 1)
        os.dup2(self.devnull if silent else self.std_fds[1], 2)
        out, err = CappedStream(1, self.cap), CappedStream(2, self.cap)
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        status, error = "ok", None
        t0 = time.perf_counter()
        try:
            try:
                exec(compile(code, "<string>", "exec"), self.main.__dict__)
            finally:
                if os.getpid() != self.pid:  # a fork() in the cell must never come back here
                    os._exit(0)
        except SystemExit as e:
            if e.code not in (None, 0):
                status, error = "error", f"SystemExit: {e.code}"
                err.write(error + "\n")
        except BaseException as e:  # noqa: BLE001 - the code's own failure: reported, not raised
            status = "error"
            error, text = self._format(e)
            err.write(text)
        duration = time.perf_counter() - t0
        sys.stdout, sys.stderr = old
        try:
            out.finish()
            err.finish()
        except OSError:  # the code closed or broke its stdout
            pass
        os.dup2(self.std_fds[0], 1)
        os.dup2(self.std_fds[1], 2)
        return {"status": status, "error": error, "duration": duration,
                "omitted": [out.omitted, out.marker_len, err.omitted, err.marker_len]}

    def run_script(self, source, timeout, cpu, after):
        """``source`` as a file of its own, run by a fresh ``python FILE`` (a script's tracebacks name
        that file and its lines); the environment is the worker's without a fixed hash seed."""
        import subprocess
        import tempfile

        self._cpu_limit(cpu)
        os.makedirs("workspace", exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir="workspace", suffix=".py", delete=False, encoding="utf-8") as f:
            f.write(source)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
        status, stdout, stderr, code = "ok", "", "", None
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, os.path.abspath(f.name)], capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, env=env)
            stdout = done.stdout.decode("utf-8", "replace")
            stderr = done.stderr.decode("utf-8", "replace")
            code = done.returncode
            status = "ok" if code == 0 else "error"
        except subprocess.TimeoutExpired:
            status = "timeout"
        except OSError as e:
            status, stderr = "error", f"cannot start python: {e}"
        finally:
            try:
                os.remove(f.name)
            except OSError:
                pass
        duration = time.perf_counter() - t0
        if after is not None:
            stdout = stdout.split(after)[-1]
        omitted = []
        for fd, text in ((self.std_fds[0], stdout), (self.std_fds[1], stderr)):
            stream = CappedStream(fd, self.cap)
            stream.write(text)
            stream.finish()
            omitted += [stream.omitted, stream.marker_len]
        return {"status": status, "error": None, "duration": duration, "returncode": code, "path": f.name,
                "omitted": omitted}

    @staticmethod
    def _format(e):
        import traceback

        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _SELF:
            tb = tb.tb_next
        try:
            text = "".join(traceback.format_exception(type(e), e, tb))
            last = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1]
        except BaseException:  # noqa: BLE001 - a broken __str__
            text = last = f"{type(e).__name__}: <unprintable>"
            text += "\n"
        return last, text

    @staticmethod
    def _cpu_limit(cpu):
        """CPU seconds for this cell (a backstop for the parent's wall-clock timeout)."""
        import resource

        used = sum(os.times()[:2])
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_CPU)
            soft = max(1, -int(-(used + cpu) // 1))  # ceil
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        except (ValueError, OSError):
            pass


def main(cfg):
    del sys.path[0]  # not the current directory
    sys.path.extend(p for p in cfg["sys_path"] if p not in sys.path)
    sys.prefix, sys.exec_prefix = cfg["prefix"], cfg["exec_prefix"]
    warnings = []
    if cfg["namespaces"]:
        try:
            setup_namespace(cfg, warnings)
        except OSError as e:
            write_frame(cfg["rep_fd"], {"op": "failed", "error": f"namespace set-up failed: {e}"})
            raise SystemExit(70) from None
        child = os.fork()
        if child:
            init_loop(child, (cfg["req_fd"], cfg["rep_fd"]))
        drop_privileges(cfg)
    os.chdir(cfg["workdir"])
    set_limits(cfg, warnings)
    for name in cfg.get("preload") or ():  # optional: pay heavy imports before the first call
        try:
            __import__(name)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            warnings.append(f"preload {name}: {type(e).__name__}: {e}")
    Worker(cfg, warnings).serve()
