"""Helper processes for comparisons that may run away: math-verify with a hard deadline, off the main thread.

    with HelperPool(2, memory_mb=4096, init=load_math_verify) as pool:
        outcomes = pool.map(compare, [(gold, pred), ...], timeout=15.0)   # [Outcome("ok", value), ...]
    shared_pool(memory_mb=4096).call(compare, (gold, pred), timeout=15.0)  # one per process, any thread

math-verify limits its own steps with SIGALRM, which works only in a main thread; the tool loop
grades records in its worker threads, where an answer such as ``10^(10^12)`` would keep sympy busy for
hours. A helper runs each call in its own main thread (so math-verify's alarms work there too) and
the parent kills a helper past its deadline and starts another. Helpers are ``spawn``-ed (safe
from a threaded parent), ignore SIGINT (Ctrl-C or a notebook kernel's shutdown is the parent's
business: no traceback from a helper), and cap their address space. The grader
(:mod:`dualdistill.grading.grader`) and the official-comparable score
(:mod:`dualdistill.grading.official_score`) both use this module.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds a helper may take to start (its imports)
MAX_START_FAILURES = 3  # helpers that fail to start before the pool gives up (outcomes "unavailable")


@dataclass(frozen=True)
class Outcome:
    """One call's fate: ``ok`` (``value`` is the result), ``raised`` (the function raised: ``detail``),
    ``timeout`` (killed past its deadline), ``died`` (the helper died) or ``unavailable`` (no helper
    could start)."""

    status: str
    value: Any = None
    detail: str = ""


def _serve(conn: Any, memory_mb: int | None, init: Callable[[], Any] | None) -> None:
    """A helper's main loop: ``(key, fn, args)`` in, ``(key, status, value, detail)`` out, until EOF."""
    if memory_mb:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and kernel shutdowns are the parent's business
    if init is not None:
        init()
    conn.send(("ready",))
    while True:
        try:
            key, fn, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            conn.send((key, "ok", fn(*args), ""))
        except BaseException as err:  # MemoryError included: the helper survives to say so
            conn.send((key, "raised", None, f"{type(err).__name__}: {err}"))


class _Helper:
    def __init__(self, ctx: Any, memory_mb: int | None, init: Callable[[], Any] | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, memory_mb, init), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.item: tuple[int, Callable[..., Any], tuple] | None = None
        self.deadline = time.monotonic() + START_TIMEOUT

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.conn.close()


class HelperPool:
    """``workers`` helper processes running calls with a hard per-call deadline (module docstring)."""

    def __init__(self, workers: int = 1, *, memory_mb: int | None = 4096,
                 init: Callable[[], Any] | None = None) -> None:
        self.workers = max(1, workers)
        self.memory_mb, self.init = memory_mb, init
        self.pid = os.getpid()
        self._ctx = mp.get_context("spawn")
        self._helpers: list[_Helper] = []
        self._start_failures = 0
        self.lock = threading.Lock()  # for callers sharing one pool across threads

    def __enter__(self) -> HelperPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for h in self._helpers:
            h.kill()
        self._helpers = []

    def call(self, fn: Callable[..., Any], args: tuple, *, timeout: float) -> Outcome:
        """One call, from any thread (calls are serialised)."""
        with self.lock:
            return self.map(fn, [args], timeout=timeout)[0]

    def map(self, fn: Callable[..., Any], arg_list: Sequence[tuple], *, timeout: float) -> list[Outcome]:
        """``fn(*args)`` for each ``args`` in helpers, in order; a call past ``timeout`` seconds is killed
        (its outcome ``timeout``). ``fn`` must be picklable (a module-level function)."""
        out: dict[int, Outcome] = {}
        queue = deque((i, fn, tuple(args)) for i, args in enumerate(arg_list))
        while len(self._helpers) < min(self.workers, len(queue)):
            self._helpers.append(_Helper(self._ctx, self.memory_mb, self.init))
        while queue or any(h.item for h in self._helpers):
            if not self._helpers:  # no helper can start
                for i, _, _ in queue:
                    out[i] = Outcome("unavailable", detail="helper process unavailable")
                break
            for h in self._helpers:
                if h.ready and h.item is None and queue:
                    h.item = queue.popleft()
                    h.deadline = time.monotonic() + timeout
                    try:
                        h.conn.send(h.item)
                    except OSError:
                        pass  # seen as EOF below
            first = min(h.deadline for h in self._helpers)
            wait = None if first == float("inf") else max(0.0, first - time.monotonic())
            for conn in multiprocessing.connection.wait([h.conn for h in self._helpers], timeout=wait):
                helper = next(h for h in self._helpers if h.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    self._replace(helper, out, Outcome("died", detail="helper process died"))
                    continue
                if msg == ("ready",):
                    helper.ready, helper.deadline = True, float("inf")
                    self._start_failures = 0
                elif helper.item is not None and msg[0] == helper.item[0]:
                    out[msg[0]] = Outcome(msg[1], msg[2], msg[3])
                    helper.item, helper.deadline = None, float("inf")
            now = time.monotonic()
            for helper in list(self._helpers):
                if helper.deadline <= now:
                    what = f"over {timeout} s" if helper.item else "helper did not start"
                    self._replace(helper, out, Outcome("timeout", detail=what))
        return [out[i] for i in range(len(arg_list))]

    def _replace(self, helper: _Helper, out: dict[int, Outcome], outcome: Outcome) -> None:
        if helper.item is not None:
            out[helper.item[0]] = outcome
        else:
            self._start_failures += 1
        helper.kill()
        self._helpers.remove(helper)
        if self._start_failures < MAX_START_FAILURES:
            self._helpers.append(_Helper(self._ctx, self.memory_mb, self.init))
        else:
            logger.warning("helper processes fail to start (%s)", outcome.detail)


_SHARED: dict[tuple[Any, ...], HelperPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(*, memory_mb: int | None = 4096, init: Callable[[], Any] | None = None) -> HelperPool:
    """One helper per (memory cap, init) and process, for single calls from any thread."""
    key = (memory_mb, init)
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None or pool.pid != os.getpid():
            pool = _SHARED[key] = HelperPool(1, memory_mb=memory_mb, init=init)
        return pool


@atexit.register
def _close_shared() -> None:
    for pool in _SHARED.values():
        if pool.pid == os.getpid():
            pool.close()
