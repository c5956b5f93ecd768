"""An inference engine's child processes and the GPU memory they hold: found, measured, waited for.

    with new_children() as started:              # the processes an engine starts (vLLM's EngineCore)
        engine = start_engine()
    log_free_gpu_memory("before S1's engine")    # free memory per GPU (NVML; nothing on a CPU)
    gpu_memory_of(started)                       # {pid: bytes on the GPU} of those processes
    still = wait_gone(started, timeout=60)       # after shutdown: wait for them to exit (SIGKILL after timeout)

vLLM in-process keeps its model in an EngineCore child process: the parent's torch counters do not see
that memory, and it is free again only when that process has exited. Stage 05 starts S0, S1 and S2 one
after another in one kernel and stage 04 samples then trains, so a policy's ``close`` waits here for its
engine's processes to be gone before the next engine starts.

GPU figures come from NVML (``nvidia-ml-py``, a vLLM dependency; ``nvidia-smi`` when it is missing) and
never create a CUDA context in this process. Process lists come from ``psutil`` (a vLLM dependency);
without it, :func:`new_children` finds nothing and :func:`wait_gone` has nothing to wait for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def children(pid: int | None = None) -> set[int]:
    """Every live descendant of ``pid`` (default: this process)."""
    ps = _psutil()
    if ps is None:
        return set()
    try:
        return {c.pid for c in ps.Process(pid or os.getpid()).children(recursive=True)}
    except ps.NoSuchProcess:
        return set()


# helpers Python's multiprocessing starts once and keeps for the life of this process: never an engine's
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")


def _helper(pid: int) -> bool:
    ps = _psutil()
    try:
        cmd = " ".join(ps.Process(pid).cmdline())
    except Exception:  # noqa: BLE001 - gone or unreadable: not a helper we keep
        return False
    return any(h in cmd for h in HELPERS)


def _titled(pid: int, marks: tuple[str, ...]) -> bool:
    ps = _psutil()
    try:
        proc = ps.Process(pid)
        text = proc.name() + " " + " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - gone or unreadable
        return False
    return any(m in text for m in marks)


@contextlib.contextmanager
def new_children(marks: tuple[str, ...] = ()) -> Iterator[set[int]]:
    """The set, filled when the block ends, of descendants of this process started inside it (not
    multiprocessing's own long-lived helpers, e.g. its resource tracker). With ``marks`` (e.g. vLLM's
    process titles ``VLLM::EngineCore``, ``VLLM::Worker``), only those whose name or command line holds
    one of them, so a sandbox worker another thread starts meanwhile is left alone; when none does
    (no title set), all of them."""
    before = children()
    started: set[int] = set()
    try:
        yield started
    finally:
        new = {pid for pid in children() - before if not _helper(pid)}
        marked = {pid for pid in new if _titled(pid, marks)} if marks else set()
        started |= marked or new


def alive(pids: set[int] | list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    ps = _psutil()
    out = []
    for pid in pids:
        if ps is not None:
            try:
                if ps.Process(pid).status() != ps.STATUS_ZOMBIE:
                    out.append(pid)
            except ps.NoSuchProcess:
                pass
        else:
            try:
                os.kill(pid, 0)
                out.append(pid)
            except ProcessLookupError:
                pass
    return out


def wait_gone(pids: set[int] | list[int], timeout: float = 60.0, *, kill: bool = True) -> list[int]:
    """Wait until ``pids`` have exited; after ``timeout`` s send SIGKILL to what is left (``kill``) and wait
    a few seconds more. Returns the pids still alive at the end (empty: all gone)."""
    deadline = time.monotonic() + timeout
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = alive(left)
    if left and kill:
        log.warning("engine processes %s still alive %.0f s after shutdown: killing them", left, timeout)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while left and time.monotonic() < end:
            time.sleep(0.1)
            left = alive(left)
    return left


# --- GPU memory (NVML) -----------------------------------------------------------------------------
def _nvml() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - no NVML (no driver, no package): no GPU figures
        return None


def free_gpu_memory() -> list[dict[str, Any]]:
    """Per GPU: index, name, free and total bytes. Empty without an NVIDIA GPU."""
    nv = _nvml()
    if nv is not None:
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            info = nv.nvmlDeviceGetMemoryInfo(h)
            name = nv.nvmlDeviceGetName(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "free": int(info.free), "total": int(info.total)})
        return out
    if shutil.which("nvidia-smi") is None:
        return []
    run = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.free,memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30)
    rows = [[c.strip() for c in line.split(",")] for line in run.stdout.splitlines() if line.strip()]
    return [{"index": int(r[0]), "name": r[1], "free": int(r[2]) * 2**20, "total": int(r[3]) * 2**20} for r in rows]


def gpu_memory_by_pid() -> dict[int, int]:
    """Bytes of GPU memory each process uses, summed over GPUs (NVML, else ``nvidia-smi``). Empty without a GPU."""
    nv = _nvml()
    used: dict[int, int] = {}
    if nv is not None:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                used[int(p.pid)] = used.get(int(p.pid), 0) + int(p.usedGpuMemory or 0)
        return used
    if shutil.which("nvidia-smi") is None:
        return used
    run = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30)
    for line in run.stdout.splitlines():
        parts = [c.strip() for c in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            used[int(parts[0])] = used.get(int(parts[0]), 0) + int(parts[1]) * 2**20
    return used


def gpu_memory_of(pids: set[int] | list[int]) -> dict[int, int]:
    """GPU bytes of each of ``pids`` (0 for a process that holds none)."""
    used = gpu_memory_by_pid()
    return {pid: used.get(pid, 0) for pid in pids}


def rss_of(pids: set[int] | list[int]) -> dict[int, int]:
    """Resident memory (bytes) of each of ``pids`` that is alive: the CPU build's engine memory."""
    ps = _psutil()
    out = {}
    for pid in pids:
        with contextlib.suppress(Exception):
            out[pid] = int(ps.Process(pid).memory_info().rss)
    return out


def log_free_gpu_memory(what: str) -> list[dict[str, Any]]:
    """Log (INFO) the free memory of every GPU before ``what``; returns the figures (empty on a CPU)."""
    gpus = free_gpu_memory()
    for g in gpus:
        log.info("%s: GPU %d (%s) has %.1f of %.1f GiB free", what, g["index"], g["name"], g["free"] / 2**30,
                 g["total"] / 2**30)
    return gpus
