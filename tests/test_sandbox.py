"""The code sandbox: one adversarial test per limit, plus persistence, restore and the pool.

These run as root here and in CI: namespace isolation is required, not skipped."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from dualdistill.sandbox.pool import SandboxPool
from dualdistill.sandbox.python_sandbox import ExecResult, PythonSandbox, namespaces_available

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sb():
    with PythonSandbox(timeout=1.5, isolation="auto") as box:
        yield box


def _host_processes(needle: str) -> list[int]:
    """Host pids whose command line contains ``needle``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
                cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if needle in cmd and str(os.getpid()) != entry:
                pids.append(int(entry))
    return pids


def _processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == uid:
                    pids.append(int(entry))
    return pids


def test_namespaces_are_used_when_root(sb: PythonSandbox) -> None:
    if os.geteuid() != 0:
        pytest.fail("the sandbox tests must run as root (as in CI) to exercise namespace isolation")
    assert namespaces_available()[0], namespaces_available()[1]
    assert sb.isolation == "namespaces"
    r = sb.run("import os\nprint(os.getuid(), os.getgid(), os.getgroups(), os.getpid())\n"
               "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])")
    uid, gid, groups, pid, caps = r.stdout.split(maxsplit=4)
    assert int(uid) != 0 and int(gid) != 0 and groups == "[]"
    assert int(pid) == 2  # PID 1 is the namespace's init
    assert int(caps.strip(), 16) == 0


# --- results ------------------------------------------------------------------------------------
def test_persistence_across_calls(sb: PythonSandbox) -> None:
    assert sb.run("import math\ndef f(n):\n    return math.factorial(n) % 1000\nx = 41").ok
    r = sb.run("print(x + 1, f(10))")
    assert (r.status, r.stdout, r.output) == ("ok", "42 800\n", "42 800")
    assert isinstance(r, ExecResult) and r.duration > 0


def test_exception_gives_traceback(sb: PythonSandbox) -> None:
    r = sb.run("def g():\n    return 1 / 0\ng()")
    assert r.status == "error" and not r.ok
    assert r.error == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last)" in r.output and 'File "<string>", line 2, in g' in r.output
    assert "_sandbox_worker" not in r.output
    r = sb.run("print('before')\nx = (")
    assert r.status == "error" and "SyntaxError" in r.output and sb.run("print('next')").stdout == "next\n"


def test_warning_on_stderr_is_not_a_failure(sb: PythonSandbox) -> None:
    r = sb.run("import warnings, sys\nwarnings.warn('careful')\nprint('e', file=sys.stderr)\nprint('done')")
    assert r.status == "ok" and "careful" in r.stderr and "e\n" in r.stderr
    assert r.output == "done"


def test_subprocess_output_is_captured(sb: PythonSandbox) -> None:
    r = sb.run("import os, subprocess, sys\nos.write(1, b'fd-level\\n')\n"
               "subprocess.run([sys.executable, '-c', 'print(6 * 7)'], check=True)")
    assert r.ok and r.stdout == "fd-level\n42\n", r


def test_numpy_and_sympy_are_importable(sb: PythonSandbox) -> None:
    r = sb.run("import numpy as np, sympy\nprint(int(np.arange(5).sum()), sympy.factorint(1001))", timeout=20)
    assert r.stdout == "10 {7: 1, 11: 1, 13: 1}\n", r


# --- one adversarial test per limit -------------------------------------------------------------
@pytest.mark.timeout(60)  # a hang guard: the timeout below must fire
def test_infinite_loop_times_out(sb: PythonSandbox) -> None:
    t0 = time.monotonic()
    r = sb.run("print('start', flush=True)\nwhile True:\n    pass")
    assert r.status == "timeout" and time.monotonic() - t0 > 1.4  # it ran until its 1.5 s limit
    assert r.stdout == "start\n" and r.stderr == ""
    assert r.output == "start\nTimeoutError: execution timed out after 1.5 seconds"


@pytest.mark.timeout(30)  # the sleep is 60 s: only the per-call timeout ends it in time
def test_sleep_times_out_with_per_call_timeout(sb: PythonSandbox) -> None:
    r = sb.run("import time\ntime.sleep(60)", timeout=0.5)
    assert r.status == "timeout" and r.output.endswith("timed out after 0.5 seconds")
    assert sb.run("print('after')").stdout == "after\n"


def test_state_is_restored_after_a_timeout(sb: PythonSandbox) -> None:
    sb.run("x = 1\nimport math\nhistory = []")
    sb.run("history.append('a')")
    assert sb.run("x = 2\nhistory.append('b')\nwhile True:\n    pass").status == "timeout"
    r = sb.run("print(x, history, math.pi > 3)")
    assert r.stdout == "1 ['a'] True\n", r  # the state before the timed-out call


def test_memory_bomb(sb: PythonSandbox) -> None:
    r = sb.run("x = bytearray(2 * 1024 ** 3)")
    assert r.status == "error" and "MemoryError" in r.output
    r = sb.run("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))", timeout=20)
    assert r.status == "error" and "MemoryError" in r.output, r
    assert sb.run("print('alive')").stdout == "alive\n"


def test_fork_bomb_is_capped_and_cleaned_up() -> None:
    with PythonSandbox(timeout=2.0, max_processes=8) as box:
        code = ("import os, time\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n"
                "            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n"
                "    print('capped', n)")
        r = box.run(code)
        assert r.ok and r.stdout.startswith("capped"), r
        assert int(r.stdout.split()[1]) < 8
        uid = int(box.run("import os\nprint(os.getuid())").stdout)
        r = box.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
        assert r.status in ("timeout", "error")
        time.sleep(0.2)
        assert len(_processes_of_uid(uid)) <= 1  # at most the new worker
        assert box.run("print('alive')").stdout == "alive\n"


def test_setsid_child_does_not_outlive_the_call(sb: PythonSandbox) -> None:
    tag = f"{time.time() % 1000 + 1000:.3f}"  # a unique sleep duration to find it on the host
    r = sb.run(f"import subprocess\np = subprocess.Popen(['sleep', '{tag}'], start_new_session=True)\n"
               "print(p.pid)")
    assert r.ok, r
    time.sleep(0.1)
    assert _host_processes(f"sleep {tag}") == []
    tag2 = f"{float(tag) + 1:.3f}"
    r = sb.run(f"import subprocess, time\nsubprocess.Popen(['sleep', '{tag2}'], start_new_session=True)\n"
               "time.sleep(60)", timeout=0.8)
    assert r.status == "timeout"
    time.sleep(0.1)
    assert _host_processes(f"sleep {tag2}") == []


def test_no_loopback_connection(sb: PythonSandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        r = sb.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                   "print('connected')")
        assert r.status == "error" and "connected" not in r.stdout
        with pytest.raises(TimeoutError):
            server.accept()
        r = sb.run("import socket\nsocket.getaddrinfo('pypi.org', 443)")
        assert r.status == "error"
    finally:
        server.close()


def test_writes_do_not_reach_the_caller(sb: PythonSandbox, tmp_path: Path) -> None:
    name = f"pwned-{uuid.uuid4().hex}.txt"
    targets = [REPO / name, Path.cwd() / name, Path("/tmp") / name, tmp_path / name]
    code = "\n".join(
        f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError as e:\n    print('blocked', e.errno)"
        for t in targets
    ) + f"\nopen({name!r}, 'w').write('x')\nimport os\nprint(os.path.exists({name!r}))"
    r = sb.run(code)
    assert r.ok, r
    assert r.stdout.splitlines()[-1] == "True"  # its own working directory is writable
    for t in targets:
        assert not t.exists(), t
    assert not (REPO / name).exists()
    sb.close()
    assert not any(p.name == name for p in Path("/tmp").rglob(name))


def test_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-do-not-leak")
    with PythonSandbox(timeout=2.0) as box:
        r = box.run("import os\nprint(os.environ.get('OPENAI_API_KEY'))\n"
                    "for p in ('/proc/self/environ', '/proc/1/environ'):\n"
                    "    try:\n        print(open(p, 'rb').read())\n"
                    "    except OSError as e:\n        print('denied', p)")
        assert r.ok and r.stdout.startswith("None\n")
        assert "sk-test-do-not-leak" not in r.output


@pytest.mark.timeout(60)  # a hang guard (bench/sandbox_bench.py measures the speed)
def test_large_output_is_capped(sb: PythonSandbox) -> None:
    r = sb.run("print('a' * 25_000_000 + 'END')\nimport os\nos.write(1, b'b' * 25_000_000)\nprint('TAIL')")
    assert r.ok
    assert r.stdout.startswith("aaa") and r.stdout.rstrip().endswith("TAIL")
    assert "characters omitted" in r.stdout
    assert len(r.stdout) < sb.max_output_chars + 100 and len(r.output) < sb.max_output_chars + 100


@pytest.mark.timeout(30)  # input() must not wait for a reader that never comes
def test_input_gets_eof(sb: PythonSandbox) -> None:
    r = sb.run("x = input('number? ')", timeout=20)
    assert r.status == "error" and "EOFError" in r.output


def test_sys_exit(sb: PythonSandbox) -> None:
    sb.run("kept = 'yes'")
    assert sb.run("import sys\nprint('bye')\nsys.exit(0)").status == "ok"
    r = sb.run("import sys\nsys.exit(3)")
    assert r.status == "error" and "SystemExit: 3" in r.output
    assert sb.run("exit()").status == "ok"
    assert sb.run("print(kept)").stdout == "yes\n"


def test_os_exit_and_signals_to_the_parent(sb: PythonSandbox) -> None:
    sb.run("kept = [1, 2]")
    r = sb.run("import os\nprint('partial', flush=True)\nos._exit(7)")
    assert r.status == "killed" and "exit code 7" in r.output and r.stdout == "partial\n"
    assert sb.run("print(kept)").stdout == "[1, 2]\n"  # restarted and restored
    r = sb.run("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)")
    assert r.status == "error"  # init is root: not ours to signal
    r = sb.run(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)")
    assert r.status == "error" and "ProcessLookupError" in r.output  # the caller is invisible
    r = sb.run("import os, signal\nos.killpg(0, signal.SIGKILL)")
    assert r.status == "killed"
    assert sb.run("print(kept)").stdout == "[1, 2]\n"


def test_limits_are_set(sb: PythonSandbox) -> None:
    r = sb.run("import resource as R\nfor n in ('RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_CPU', 'RLIMIT_CORE'):\n"
               "    print(n, *R.getrlimit(getattr(R, n)))")
    got = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in r.stdout.splitlines()}
    assert got["RLIMIT_AS"] == (1024 * 2**20,) * 2
    assert got["RLIMIT_NPROC"] == (16, 16)
    assert 0 < got["RLIMIT_CPU"][0] < 10_000  # the per-call CPU cap
    assert got["RLIMIT_CORE"] == (0, 0)


def test_cpu_cap() -> None:
    """RLIMIT_CPU per call stops a CPU burner even when the wall-clock timeout is long."""
    with PythonSandbox(timeout=20.0, cpu_seconds=0.5) as box:
        box.run("kept = 5")
        r = box.run("while True:\n    pass")  # killed by the CPU cap, long before the 20 s timeout
        assert r.status == "killed" and "SIGXCPU" in r.output, r
        assert box.run("print(kept)").stdout == "5\n"


def test_disk_cap() -> None:
    with PythonSandbox(timeout=3.0, disk_mb=8) as box:
        r = box.run("open('big.bin', 'wb').write(b'0' * (64 * 2**20))")
        assert r.status == "error" and ("File too large" in r.output or "No space" in r.output), r


# --- lifecycle, threads, pool -------------------------------------------------------------------
def test_reset_gives_fresh_state(sb: PythonSandbox) -> None:
    sb.run("secret = 1\nopen('note.txt', 'w').write('x')")
    sb.reset()
    r = sb.run("import os\nprint('secret' in globals(), os.path.exists('note.txt'))")
    assert r.stdout == "False False\n"
    pid = sb._state["worker"].proc.pid
    sb.reset()
    sb.reset()  # used since: a new worker, then nothing run: kept
    new = sb._state["worker"].proc.pid
    sb.reset()
    assert sb._state["worker"].proc.pid == new != pid


def test_preload() -> None:
    with PythonSandbox(timeout=3.0, preload=("fractions",)) as box:
        assert box.run("import sys\nprint('fractions' in sys.modules)").stdout == "True\n"


def test_sandboxes_in_threads() -> None:
    errors: list[str] = []

    def work(i: int) -> None:
        with PythonSandbox(timeout=3.0) as box:
            box.run(f"acc = {i}")
            for k in range(20):
                r = box.run(f"acc += {k}")
                if not r.ok:
                    errors.append(r.output)
            r = box.run("print(acc)")
            if r.stdout != f"{i + 190}\n":
                errors.append(f"thread {i}: {r!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_pool_runs_many_trajectories_on_few_workers() -> None:
    """4 trajectories on 2 workers: each keeps its own namespace; two workers run at once; a call
    waits only while both are running code."""
    with SandboxPool(2, timeout=10.0) as pool:
        results: dict[int, str] = {}
        spans: list[tuple[float, float]] = []

        def trajectory(i: int) -> None:
            seen = pool.run(i, "print('v' in globals())").stdout
            t0 = time.monotonic()
            pool.run(i, f"import time\ntime.sleep(0.4)\nv = {i}")
            spans.append((t0, time.monotonic()))
            results[i] = seen + pool.run(i, "print(v)").stdout
            pool.release(i)

        threads = [threading.Thread(target=trajectory, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == {i: f"False\n{i}\n" for i in range(4)}  # a fresh namespace for every trajectory
        overlaps = sum(1 for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1])
        assert overlaps >= 2  # two workers ran at the same time
        assert pool.stats["max_running"] == 2 and pool.stats["waits_below_capacity"] == 0
        assert all(not sb.owners for sb in pool._all)  # every namespace dropped


def test_pool_state_survives_a_move_and_random_streams_stay_apart() -> None:
    """A's home worker is busy with B's long cell: A's next call runs in the other worker, where its
    namespace is rebuilt from its completed cells; each namespace keeps its own random stream."""
    import random

    with SandboxPool(2, timeout=10.0) as pool:
        pool.run("A", "import random\nrandom.seed(7)\nfirst = random.random()\nx = [1, 2]")
        home = pool._home["A"]
        busy = threading.Thread(target=pool.run, args=("B", "import time\ntime.sleep(1.0)"))
        pool._home["B"] = home  # B lives where A lives and keeps it busy
        busy.start()
        time.sleep(0.3)
        r = pool.run("A", "x.append(3)\nprint(x, random.random())")
        busy.join()
        assert pool.stats["moves"] == 1 and pool._home["A"] is not home
        rng = random.Random(7)
        rng.random()
        assert r.stdout == f"[1, 2, 3] {rng.random()}\n"  # state and random stream as in one process
        assert pool.run("A", "print(len(x))").stdout == "3\n"
        assert "A" not in home.owners  # the stale copy was dropped when that worker came free


def test_close_kills_everything_and_rejects_runs() -> None:
    box = PythonSandbox(timeout=2.0)
    r = box.run("import subprocess\nprint(subprocess.Popen(['sleep', '777.25']).pid)")
    assert r.ok
    uid = int(box.run("import os\nprint(os.getuid())").stdout)
    box.close()
    assert _processes_of_uid(uid) == []
    with pytest.raises(Exception, match="closed"):
        box.run("print(1)")


def test_degraded_mode_still_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """isolation='none' (what a non-root user gets, with a warning): rlimits, clean env, timeout."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-do-not-leak")
    with PythonSandbox(timeout=1.0, isolation="none") as box:
        assert box.isolation == "none"
        r = box.run(f"import os\nprint(os.environ.get('OPENAI_API_KEY'), os.getcwd() != {os.getcwd()!r})")
        assert r.stdout == "None True\n"
        assert box.run("while True:\n    pass").status == "timeout"
        assert box.run("x = bytearray(2 * 1024 ** 3)").status == "error"
        assert box.run("print('ok')").stdout == "ok\n"
