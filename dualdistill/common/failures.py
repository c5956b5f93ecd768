"""A stage whose sampling left failed records: the one error, its one-line message, its exit code.

    check_complete("05", "samples", n_failed=82, n_total=120, first_error="ConnectError: ...",
                   max_failed_fraction=0.0)   # raises IncompleteStage

A failed record (the policy failed after its retries: an engine gone, an endpoint refusing) is left
out of every metric, so a stage that ends with some would report a number over the survivors. The
stage writes what it has (records, a summary whose rows say they are incomplete), then raises
:class:`IncompleteStage`; the command line prints its one line on stderr and exits with
:data:`EXIT_INCOMPLETE`, and ``dualdistill run`` stops there. Rerunning the same command retries
exactly the failed records. A tolerance (``max_failed_fraction`` of each sampling section) lets a
stage end normally with a few failures.
"""

from __future__ import annotations

EXIT_INCOMPLETE = 3  # the exit code of a stage command that ended with failed records


class IncompleteStage(RuntimeError):
    """Some records of a stage failed (more than its tolerance); what ended is on disk."""

    def __init__(self, stage: str, what: str, n_failed: int, n_total: int, first_error: str | None) -> None:
        self.stage, self.what, self.n_failed, self.n_total = stage, what, n_failed, n_total
        self.first_error = first_error
        cause = f" (first error: {short_error(first_error)})" if first_error else ""
        super().__init__(f"stage {stage} incomplete: {n_failed} of {n_total} {what} failed{cause}; "
                         "rerun the same command to retry them")


def short_error(error: str | None, limit: int = 200) -> str:
    """The first line of an error text, cut to ``limit`` characters."""
    line = (error or "").strip().splitlines()[0] if (error or "").strip() else "unknown error"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_complete(stage: str, what: str, *, n_failed: int, n_total: int, first_error: str | None,
                   max_failed_fraction: float) -> None:
    """Raise :class:`IncompleteStage` when more than ``max_failed_fraction`` of ``n_total`` failed."""
    if n_failed and n_failed > max_failed_fraction * n_total:
        raise IncompleteStage(stage, what, n_failed, n_total, first_error)
