"""One entry shape for every stage: the stage function, its command line, its metrics.

    @stage("02")
    def run(cfg: RunConfig, *, progress: bool = True) -> dict: ...

    python -m dualdistill.stages.compose params/smoke.yaml --set composition.balance=none
    dualdistill compose params/smoke.yaml --set composition.balance=none     # the same call

The decorator gives every stage function the same behaviour whoever calls it (a notebook, the CLI,
``python -m``): a start line and a finish line with the time it took, the package's logs as lines
under the pipeline runner, and the returned summary written as the stage's ``metrics.json``
(beside its outputs; notebooks display it, tests read it). :func:`main` is the command line of
every stage: a stage that ended with failed records prints one line on stderr and exits with
``EXIT_INCOMPLETE`` (3; ``dualdistill.common.failures``).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from dualdistill.artifacts.ledger import write_metrics
from dualdistill.artifacts.stage_table import get_stage
from dualdistill.common import progress as progress_lines
from dualdistill.common.failures import EXIT_INCOMPLETE, IncompleteStage
from dualdistill.config import ConfigError, RunConfig, load_config, parse_override

StageFunction = Callable[..., dict[str, Any]]


def stage(number: str) -> Callable[[StageFunction], StageFunction]:
    """Decorate the stage function of stage ``number`` (see the module docstring)."""
    info = get_stage(number)

    def decorate(fn: StageFunction) -> StageFunction:
        @functools.wraps(fn)
        def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
            progress_lines.configure_logging()
            rank0 = int(os.environ.get("RANK", "0")) == 0  # one writer under accelerate launch
            if progress and rank0:
                progress_lines.say(f"[stage {number}] {info.title} · run {cfg.run_name}")
            t0 = time.monotonic()
            summary = fn(cfg, progress=progress)
            seconds = time.monotonic() - t0
            if rank0:
                write_metrics(cfg, number, summary)
                if progress:
                    progress_lines.say(f"[stage {number}] done in {progress_lines.duration(seconds)}")
            return summary

        run.stage = info  # type: ignore[attr-defined]
        return run

    return decorate


def parser(number: str, prog: str | None = None) -> argparse.ArgumentParser:
    """``PARAMS [--set KEY=VALUE ...] [--quiet]``: the arguments of every stage command."""
    info = get_stage(number)
    ap = argparse.ArgumentParser(prog=prog or f"python -m dualdistill.{info.module}",
                                 description=f"stage {number}: {info.title}")
    add_stage_arguments(ap)
    return ap


def add_stage_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("params", help="params YAML, e.g. params/smoke.yaml")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params fields (dotted)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")


def run_from_args(number: str, args: argparse.Namespace) -> int:
    """Load the config named by ``args`` and run stage ``number``; print its summary as JSON."""
    try:
        cfg = load_config(args.params, dict(parse_override(s) for s in args.set))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = get_stage(number).function()(cfg, progress=not args.quiet)
    except IncompleteStage as err:  # one line, last: how many failed, the first cause, what to do
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(json.dumps(summary, indent=2, default=str))
    return 0


def main(number: str, argv: list[str] | None = None) -> int:
    """``python -m dualdistill.<stage module> PARAMS [--set K=V ...] [--quiet]``."""
    return run_from_args(number, parser(number).parse_args(argv))
