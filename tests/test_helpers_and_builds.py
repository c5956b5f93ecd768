"""The two pieces merged from copies: the helper-process pool (grading) and build-then-swap (stores).

Helpers: a call past its deadline is killed and the pool goes on with a fresh helper; a helper that
raises or dies is reported, not fatal; helpers ignore SIGINT (a kernel shutdown interrupts the parent,
never a helper: no traceback from them). Builds: a crash inside the block leaves the target as it
was; a finished build replaces the old one; a directory that is not a build is never overwritten.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from dualdistill.common.store import build_directory, current_build, read_build_meta
from dualdistill.grading.helper_process import HelperPool


# --- module-level functions: helpers are spawned, so what they run must be picklable ----------------
def add(a: int, b: int) -> int:
    return a + b


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def raise_value_error() -> None:
    raise ValueError("bad input")


def die() -> None:
    os._exit(3)


def pid_and_sigint() -> tuple[int, bool]:
    return os.getpid(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN


@pytest.mark.timeout(120)
def test_a_call_past_its_deadline_is_killed_and_the_pool_goes_on() -> None:
    with HelperPool(1, memory_mb=None) as pool:
        outcomes = pool.map(spin, [(30.0,), ], timeout=1.0)
        assert [o.status for o in outcomes] == ["timeout"]
        assert pool.call(add, (2, 3), timeout=30).value == 5  # a fresh helper took the dead one's place


@pytest.mark.timeout(120)
def test_errors_and_deaths_are_outcomes_not_crashes() -> None:
    with HelperPool(2, memory_mb=None) as pool:
        out = pool.map(add, [(1, 2)], timeout=30) + [pool.call(raise_value_error, (), timeout=30),
                                                      pool.call(die, (), timeout=30), pool.call(add, (4, 4), timeout=30)]
    assert [o.status for o in out] == ["ok", "raised", "died", "ok"]
    assert out[0].value == 3 and "ValueError: bad input" in out[1].detail and out[3].value == 8


@pytest.mark.timeout(120)
def test_helpers_ignore_sigint() -> None:
    with HelperPool(1, memory_mb=None) as pool:
        pid, ignored = pool.call(pid_and_sigint, (), timeout=30).value
        assert ignored and pid != os.getpid()
        os.kill(pid, signal.SIGINT)  # what a kernel shutdown sends the process group
        time.sleep(0.5)
        assert pool.call(add, (1, 1), timeout=30).value == 2
        assert pool.call(pid_and_sigint, (), timeout=30).value[0] == pid  # the same helper: it did not die


def test_a_crash_in_the_build_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with build_directory(target, "meta.json") as d:
        (d / "weights").write_text("v1")
        (d / "meta.json").write_text(json.dumps({"hash": "h1"}))
    assert current_build(target, "meta.json", "h1", required=("weights",))

    with pytest.raises(RuntimeError, match="killed mid-build"):
        with build_directory(target, "meta.json") as d:
            (d / "weights").write_text("v2, half written")
            raise RuntimeError("killed mid-build")
    assert (target / "weights").read_text() == "v1" and read_build_meta(target, "meta.json") == {"hash": "h1"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial build left beside it

    with pytest.raises(RuntimeError, match="wrote no meta.json"):  # a build without its meta is not a build
        with build_directory(target, "meta.json") as d:
            (d / "weights").write_text("v3")
    assert (target / "weights").read_text() == "v1"

    with build_directory(target, "meta.json") as d:  # a finished build replaces the old one
        (d / "weights").write_text("v4")
        (d / "meta.json").write_text(json.dumps({"hash": "h4"}))
    assert (target / "weights").read_text() == "v4" and not current_build(target, "meta.json", "h1")


def test_a_directory_that_is_not_a_build_is_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "my_model"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a tokenizer build"):
        with build_directory(mine, "meta.json", "tokenizer"):
            pass
    assert (mine / "notes.txt").read_text() == "keep me"
