"""Progress of long work: a bar where a person watches, plain lines where the pipeline runner streams.

    with progress.bar(len(todo), "S1 samples") as bar:
        ...; bar.update(1)

The mode comes from the environment variable ``DUALDISTILL_PROGRESS``: ``bar`` (default: tqdm, a
widget in Jupyter), ``lines`` (what ``dualdistill run`` sets for the notebook kernels it starts:
one line every ``DUALDISTILL_PROGRESS_INTERVAL`` seconds, default 15, with counts, elapsed time and
an estimate of the time left, on stderr, so the lines reach the terminal through papermill), or ``off``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

MODE_ENV = "DUALDISTILL_PROGRESS"
INTERVAL_ENV = "DUALDISTILL_PROGRESS_INTERVAL"
MODES = ("bar", "lines", "off")


def mode() -> str:
    value = os.environ.get(MODE_ENV, "bar")
    return value if value in MODES else "bar"


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, "15")))
    except ValueError:
        return 15.0


def duration(seconds: float) -> str:
    """``75.3`` -> ``"1m15s"``; under a minute ``"42s"``; hours ``"2h05m"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def say(message: str) -> None:
    """One progress line, flushed: to stderr (the runner passes the kernels' stderr to the terminal
    as it comes; what cells print to stdout stays in the executed notebook) — except in a notebook a
    person runs (``bar`` mode in a Jupyter kernel), where a line on stderr would sit in a red box
    as if something had gone wrong: there it goes to stdout."""
    interactive = mode() == "bar" and "ipykernel" in sys.modules
    print(message, file=sys.stdout if interactive else sys.stderr, flush=True)


class LineProgress:
    """A progress bar written as lines: ``[desc] n/total (p%) · 1m05s elapsed · ~4m20s left``."""

    def __init__(self, total: int | None, desc: str, *, every: float | None = None, unit: str = "") -> None:
        self.total, self.desc, self.n, self.unit = total, desc, 0, unit
        self.every = interval() if every is None else every
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            left = elapsed / self.n * (self.total - self.n) if self.n else None
            eta = f" · ~{duration(left)} left" if left is not None and self.n < self.total else ""
            head = f"{self.n}/{self.total}{unit} ({100 * self.n / self.total:.0f}%)"
        else:
            head, eta = f"{self.n}{unit}", ""
        post = f" · {self.postfix}" if self.postfix else ""
        return f"  [{self.desc}] {head}{post} · {duration(elapsed)} elapsed{eta}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            say(self.line())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            say(self.line())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(total: int | None, desc: str, *, enabled: bool = True, unit: str = "", leave: bool = True) -> Any:
    """A tqdm bar, a :class:`LineProgress`, or a disabled tqdm, by :func:`mode` (and ``enabled``)."""
    from tqdm.auto import tqdm

    current = mode()
    if not enabled or current == "off":
        return tqdm(total=total, desc=desc, disable=True)
    if current == "lines":
        return LineProgress(total, desc, unit=unit)
    return tqdm(total=total, desc=desc, unit=unit or "it", leave=leave)


def configure_logging() -> None:
    """Under the runner (``lines``), the package's INFO logs go to stderr as lines too (a notebook
    kernel has no handler otherwise). Idempotent."""
    if mode() != "lines":
        return
    logger = logging.getLogger("dualdistill")
    if not any(getattr(h, "_dualdistill", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("  %(levelname)s %(name)s: %(message)s"))
        handler._dualdistill = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
