"""Command line: the pipeline, every stage outside a notebook (e.g. under ``accelerate launch``), and tools.

    dualdistill run params/demo.yaml [--from 03] [--only 05 06] [--set eval.samples=1] [--quiet]
    dualdistill rollouts|compose|distill|self-distill|evaluate|analyze params/X.yaml [--set k=v ...]
    dualdistill sweep params/X.yaml --grid self_distill.beta1=0,0.5 self_distill.beta2=0.5,0.9,1.0 [--set k=v ...]
    dualdistill prepare-student params/X.yaml
    dualdistill push params/X.yaml --model S1 --repo-id you/agentic-r1-tiny [--dataset t1]

A stage command runs the same function as ``python -m dualdistill.stages.<module> params/X.yaml`` and as
the stage's notebook (``dualdistill.artifacts.stage_table`` is the one table of stages).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from dualdistill.artifacts.stage_table import STAGES, get_stage
from dualdistill.common.failures import EXIT_INCOMPLETE
from dualdistill.config import ConfigError, load_config, parse_override
from dualdistill.pipeline.papermill_runner import StageFailed, run_pipeline
from dualdistill.pipeline.sharing import push_to_hub
from dualdistill.stages import entry
from dualdistill.training.student import prepare_student


def _overrides(items: list[str] | None) -> dict[str, Any]:
    return dict(parse_override(i) for i in items or [])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualdistill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks 01 -> 06 with papermill")
    run.add_argument("params")
    run.add_argument("--from", dest="from_stage", help="redo this stage (e.g. 03) and all after it")
    run.add_argument("--only", nargs="+", help="run only these stages (e.g. 05 06)")
    run.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params fields")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    for s in STAGES:
        entry.add_stage_arguments(sub.add_parser(s.verb, help=f"stage {s.number}: {s.title}"))
    sweep = sub.add_parser("sweep", help="stages 04 -> 05 for every point of a grid (e.g. beta1 x beta2), reusing S1 "
                           "and its samples; one run per point under outputs/<run>/sweep/")
    sweep.add_argument("params")
    sweep.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                       help="a field and its values (read as YAML), e.g. self_distill.beta2=0.5,0.9,1.0")
    sweep.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params fields (every point)")
    sweep.add_argument("--quiet", action="store_true", help="no progress lines")
    prep = sub.add_parser("prepare-student", help="build (or reuse) the tiny student of the embedded default")
    prep.add_argument("params")
    prep.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    push = sub.add_parser("push", help="push a model and/or a training set to the Hugging Face Hub")
    push.add_argument("params")
    push.add_argument("--repo-id", required=True)
    push.add_argument("--model", help="S1, S2, ... (the merged plain model)")
    push.add_argument("--dataset", choices=["t1", "t2"])
    push.add_argument("--private", action="store_true")
    push.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stage_verbs = {s.verb for s in STAGES}
    if args.command in stage_verbs:
        return entry.run_from_args(get_stage(args.command).number, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = _overrides(args.set)
        if args.command == "run":
            try:
                results = run_pipeline(args.params, overrides, from_stage=args.from_stage, only=args.only,
                                       progress=not args.quiet)
            except StageFailed as err:
                print(f"error: {err}", file=sys.stderr)
                return EXIT_INCOMPLETE if err.incomplete else 1
            for r in results:
                print(f"stage {r.stage}: {r.status} ({r.seconds:.0f} s) -> {r.notebook}")
            return 0
        if args.command == "sweep":
            from dualdistill.pipeline.sweep import parse_grid, run_sweep
            from dualdistill.report.tables import sweep_table

            try:
                result = run_sweep(args.params, parse_grid(args.grid), overrides, progress=not args.quiet)
            except (StageFailed, FileNotFoundError, FileExistsError) as err:  # MissingStageError: one line
                print(f"error: {err}", file=sys.stderr)
                return EXIT_INCOMPLETE if getattr(err, "incomplete", False) else 1
            print(sweep_table(result["rows"]))
            print(f"results: {result['results']}\nplot: {result['plot']}")
            return 0
        cfg = load_config(args.params, overrides)
        if args.command == "prepare-student":
            print(json.dumps(prepare_student(cfg), indent=2))
            return 0
        print(json.dumps(push_to_hub(cfg, repo_id=args.repo_id, model=args.model, dataset=args.dataset,
                                     private=args.private), indent=2))
        return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
