"""A pool of sandboxes shared by many trajectories: the executor the tool loop calls.

    pool = make_sandbox_pool(cfg.sandbox)    # SandboxConfig -> SandboxPool
    pool = SandboxPool(4, timeout=3.0)       # 4 workers shared by any number of trajectories
    pool.run("traj-7", "x = 2")              # each trajectory keeps its own namespace across calls...
    pool.run("traj-7", "print(x)")           # ...and holds a worker only while its code runs
    pool.release("traj-7")                   # done: its namespace is dropped

Every worker is a :class:`~dualdistill.sandbox.python_sandbox.PythonSandbox` with all its limits.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from dualdistill.config import SandboxConfig
from dualdistill.sandbox.python_sandbox import ExecResult, PythonSandbox, SandboxError


class SandboxPool:
    """``size`` sandbox processes shared by any number of trajectories.

    Each trajectory (``owner``) has a namespace of its own in one of the workers (its home):
    ``run(owner, code)`` runs the call there when that worker is free — switching namespaces costs
    nothing — and otherwise in whichever worker is free, where the namespace is first rebuilt by
    replaying the owner's completed cells (silently; the cost is their run time again), and the old
    copy is dropped. A call therefore waits only when every worker is running someone's code, and a
    trajectory holds a worker only while its code runs; ``release(owner)`` drops its namespace.

    Trajectories sharing a worker are isolated from each other less than from the host: they have
    their own ``__main__`` and random-generator states, but one interpreter — a module one of them
    modifies, a thread it leaves running, a file it writes in the working directory, or a call that
    times out (the worker restarts, and every namespace it held is replayed at its next call) are
    seen by the others. Each worker keeps every limit of :class:`PythonSandbox`.
    """

    def __init__(self, size: int, **sandbox_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self._cond = threading.Condition()
        self._all = [PythonSandbox(**sandbox_kwargs).start() for _ in range(size)]
        self._idle: list[PythonSandbox] = list(self._all)
        self._home: dict[Hashable, PythonSandbox] = {}
        self._history: dict[Hashable, list[tuple[str, float]]] = {}  # each owner's completed cells
        self._stale: dict[int, set[Hashable]] = {id(sb): set() for sb in self._all}  # drop when next free
        self._closed = False
        self.stats = {"runs": 0, "moves": 0, "replayed_cells": 0, "max_running": 0, "waits": 0,
                      "waits_below_capacity": 0}

    @property
    def running(self) -> int:
        """Workers running code now."""
        return self.size - len(self._idle)

    def _take(self, owner: Hashable) -> tuple[PythonSandbox, bool]:
        """A free worker for ``owner`` (under the lock): its home if free, else the free one holding
        the fewest namespaces; and whether the namespace must move there."""
        while not self._idle and not self._closed:
            self.stats["waits"] += 1
            self.stats["waits_below_capacity"] += self.running < self.size
            self._cond.wait()
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        home = self._home.get(owner)
        sb = home if home in self._idle else min(self._idle, key=lambda b: sum(h is b for h in self._home.values()))
        self._idle.remove(sb)
        self.stats["max_running"] = max(self.stats["max_running"], self.running)
        moved = home is not None and home is not sb
        if moved:
            self._stale[id(home)].add(owner)
            self.stats["moves"] += 1
            self.stats["replayed_cells"] += len(self._history.get(owner, []))
        self._home[owner] = sb
        self._stale[id(sb)].discard(owner)
        return sb, moved

    def _give_back(self, sb: PythonSandbox) -> None:
        """A worker is free again: namespaces that moved away or ended meanwhile are dropped first."""
        with self._cond:
            stale, self._stale[id(sb)] = self._stale[id(sb)], set()
        try:
            for other in stale:
                sb.drop(other)
        finally:
            with self._cond:
                self._idle.append(sb)
                self._cond.notify()

    def run(self, owner: Hashable, code: str, timeout: float | None = None) -> ExecResult:
        """Execute ``code`` in ``owner``'s namespace (see the class docstring); blocks only while
        every worker is running code."""
        with self._cond:
            sb, moved = self._take(owner)
            history = list(self._history.get(owner, []))
            self.stats["runs"] += 1
        try:
            if moved:
                sb.adopt(owner, history)
            result = sb.run(code, timeout, owner=owner)
            if result.status in ("ok", "error"):  # the worker finished it: part of the state
                with self._cond:
                    self._history.setdefault(owner, []).append((code, result.duration))
            return result
        finally:
            self._give_back(sb)

    def run_script(self, source: str, timeout: float | None = None, *, after: str | None = None) -> ExecResult:
        """Run ``source`` in a fresh interpreter in whichever worker is free
        (:meth:`PythonSandbox.run_script`: nothing is kept between calls, no namespace is held)."""
        with self._cond:
            while not self._idle and not self._closed:
                self.stats["waits"] += 1
                self._cond.wait()
            if self._closed:
                raise SandboxError("the sandbox pool is closed")
            sb = self._idle.pop()
            self.stats["runs"] += 1
            self.stats["max_running"] = max(self.stats["max_running"], self.running)
        try:
            return sb.run_script(source, timeout, after=after)
        finally:
            self._give_back(sb)

    def release(self, owner: Hashable) -> None:
        """``owner`` is done: its namespace is dropped (now if its worker is free, else later)."""
        with self._cond:
            self._history.pop(owner, None)
            home = self._home.pop(owner, None)
            if home is None:
                return
            self._stale[id(home)].add(owner)
            if home not in self._idle:
                return  # dropped when its worker comes free
            self._idle.remove(home)
        self._give_back(home)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for sb in self._all:
            sb.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_sandbox_pool(cfg: SandboxConfig) -> SandboxPool:
    """A :class:`SandboxPool` from a :class:`~dualdistill.config.SandboxConfig`."""
    return SandboxPool(cfg.workers, timeout=cfg.timeout, memory_mb=cfg.memory_mb, max_processes=cfg.max_processes,
                       max_output_chars=cfg.max_output_chars, preload=tuple(cfg.preload))
