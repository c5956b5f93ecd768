"""``rollout.engine_processes`` without vLLM: the children a block starts are found (not multiprocessing's
resource tracker), waited for until they exit, killed when they outlive the timeout; no GPU means no GPU
figures. The real engine is in tests/test_vllm_engine_lifecycle.py (the CPU build)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

from dualdistill.rollout import engine_processes as ep


def test_new_children_finds_what_the_block_started_and_wait_gone_waits() -> None:
    with ep.new_children() as started:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert started == {proc.pid}
    assert ep.alive(started) == [proc.pid]
    t0 = time.monotonic()
    assert ep.wait_gone(started, timeout=30) == []  # exited by itself, before the timeout
    proc.wait()
    assert time.monotonic() - t0 < 20


def test_marks_keep_only_the_engines_processes() -> None:
    code = "import sys, time; time.sleep(1)"
    with ep.new_children(marks=("VLLM::",)) as started:
        engine = subprocess.Popen([sys.executable, "-c", code, "VLLM::EngineCore"])
        sandbox = subprocess.Popen([sys.executable, "-c", code, "sandbox-worker"])
    assert started == {engine.pid}
    with ep.new_children(marks=("VLLM::",)) as untitled:  # no process carries a mark: all of them
        other = subprocess.Popen([sys.executable, "-c", code])
    assert untitled == {other.pid}
    for p in (engine, sandbox, other):
        p.wait()


def test_a_child_outliving_the_timeout_is_killed() -> None:
    with ep.new_children() as started:
        proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "time.sleep(60)"])
    left = ep.wait_gone(started, timeout=0.5)
    proc.wait(timeout=10)
    assert left == [] and proc.returncode == -9


def _sleep() -> None:
    time.sleep(0.3)


def test_multiprocessing_helpers_are_not_engine_processes() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ep.new_children() as started:
        p = ctx.Process(target=_sleep)
        p.start()
        lock = ctx.Lock()  # spawn starts the resource tracker, which lives as long as this process
        del lock
    assert p.pid in started
    assert all(not ep._helper(pid) for pid in started)
    p.join()


def test_no_gpu_means_no_figures(monkeypatch) -> None:
    monkeypatch.setattr(ep, "_nvml", lambda: None)
    monkeypatch.setattr(ep.shutil, "which", lambda name: None)
    assert ep.free_gpu_memory() == [] and ep.gpu_memory_of([1, 2]) == {1: 0, 2: 0}
    assert ep.log_free_gpu_memory("x") == []
