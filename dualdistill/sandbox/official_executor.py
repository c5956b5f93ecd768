"""The official evaluation loop's executor, reproduced in the project's sandbox (DESIGN §7, §13).

    state = ""                                             # the program the official executor replays
    run = run_official(pool, raw_code, state, timeout=3.0)
    run.feedback, run.status, run.program                  # text for <executor>, ok|error|timeout|killed, new state

What it reproduces of the official ``code_block`` (``math_utils/utils.py``), as observed by running it:

- every markdown fence marker is deleted anywhere in the block (a ```` ```py ```` fence leaves a
  line ``py``, a ``NameError``), then spaces and newlines are stripped at both ends;
- the program run is the state so far, a marker line, and the new block: one fresh interpreter
  per call (``python FILE``, the file ``workspace/tmpXXXXXXXX.py`` in the sandbox's working
  directory), so earlier blocks run again (new random numbers included) and tracebacks name that
  file and the line numbers the official file would have; the time limit covers the whole program;
- after a call without stderr the state becomes ``state + "\\n" + program`` — the program already
  holds the state, so the replayed code doubles with every successful call and late calls time out
  sooner (as in the official code);
- the feedback: stderr alone when stderr is non-empty (stdout dropped, whatever the exit status; a
  warning counts), else stdout as printed after the marker (its own trailing newline kept), and
  ``formatting.OFFICIAL_TIMEOUT_OUTPUT`` for a run past the limit; only a call without stderr and
  without timeout joins the state.

What stays the project's: the code runs only in the sandbox, with its isolation and limits (memory,
processes, no network, read-only files, stdin empty, output capped to head + tail); the marker
line is the project's own (one line, as the official one, so line numbers agree); the file lives
under the sandbox's working directory instead of the official process's.
"""

from __future__ import annotations

from dataclasses import dataclass

from dualdistill.formats.formatting import OFFICIAL_TIMEOUT_OUTPUT
from dualdistill.sandbox.pool import SandboxPool
from dualdistill.sandbox.python_sandbox import ExecResult

MARKER = "<<dualdistill: new code>>"  # printed between the replayed program and the new block
_MARKER_LINE = f"print({MARKER!r})"
_FENCES = ("```python", "```")  # deleted in this order, anywhere in a block


@dataclass(frozen=True)
class OfficialRun:
    """One code call the official way: the executor's text, its status and the state after it."""

    feedback: str  # the text inside the <executor> block
    status: str  # ok | error (stderr non-empty) | timeout | killed (the sandbox's worker died)
    program: str  # the state to replay at the next call
    result: ExecResult


def clean_code(raw_code: str) -> str:
    """A block as the official executor runs it: fence markers deleted anywhere, ends stripped of
    spaces and newlines."""
    for fence in _FENCES:
        raw_code = raw_code.replace(fence, "")
    return raw_code.strip(" \n")


def program(state: str, raw_code: str) -> str:
    """The file run for a call: the state, the marker line, the cleaned block."""
    return f"{state}\n{_MARKER_LINE}\n{clean_code(raw_code)}"


def feedback(result: ExecResult) -> tuple[str, str]:
    """(executor text, status) of a script run by the official rule."""
    if result.status == "timeout":
        return OFFICIAL_TIMEOUT_OUTPUT, "timeout"
    if result.status == "killed":
        return result.output, "killed"
    if result.stderr:
        return result.stderr, "error"
    return result.stdout, "ok"


def run_official(pool: SandboxPool, raw_code: str, state: str, *, timeout: float | None = None) -> OfficialRun:
    """Run one block the official way in a fresh interpreter of ``pool``."""
    source = program(state, raw_code)
    result = pool.run_script(source, timeout, after=MARKER + "\n")
    text, status = feedback(result)
    return OfficialRun(text, status, f"{state}\n{source}" if status == "ok" else state, result)
