"""Command line: every stage outside a notebook (e.g. under ``accelerate launch``).

    dualdistill run params/demo.yaml [--from 03] [--only 05 06] [--set eval.samples=1]
    dualdistill rollouts|compose|distill|self-distill|evaluate|analyze params/X.yaml [--set k=v ...]
    dualdistill prepare-student params/X.yaml
    dualdistill push params/X.yaml --model S1 --repo-id you/agentic-r1-tiny [--dataset t1]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

from dualdistill.config import ConfigError, load_config, parse_override

# subcommand -> "module:function" taking a RunConfig and returning a summary dict
STAGE_COMMANDS: dict[str, str] = {
    "prepare-student": "dualdistill.student:prepare_student",
    "rollouts": "dualdistill.rollouts:run_stage01",
    "compose": "dualdistill.compose:run_compose",
    "distill": "dualdistill.distill:run_teacher_distillation",
    "self-distill": "dualdistill.self_distill:run_self_distillation",
    "evaluate": "dualdistill.evaluation:run_evaluation",
    "analyze": "dualdistill.analysis:run_analysis",
}


def resolve_stage(name: str):
    module, attr = STAGE_COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def _overrides(items: list[str] | None) -> dict[str, Any]:
    return dict(parse_override(i) for i in items or [])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualdistill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks 01 -> 06 with papermill")
    run.add_argument("params")
    run.add_argument("--from", dest="from_stage", help="redo this stage (e.g. 03) and all after it")
    run.add_argument("--only", nargs="+", help="run only these stages (e.g. 05 06)")
    run.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params fields")
    for name in STAGE_COMMANDS:
        p = sub.add_parser(name, help=f"run {STAGE_COMMANDS[name]}")
        p.add_argument("params")
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    push = sub.add_parser("push", help="push a model and/or a training set to the Hugging Face Hub")
    push.add_argument("params")
    push.add_argument("--repo-id", required=True)
    push.add_argument("--model", help="S1, S2, ... (the merged plain model)")
    push.add_argument("--dataset", choices=["t1", "t2"])
    push.add_argument("--private", action="store_true")
    push.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        overrides = _overrides(args.set)
        if args.command == "run":
            from dualdistill.runner import StageFailed, run_pipeline

            try:
                results = run_pipeline(args.params, overrides, from_stage=args.from_stage, only=args.only)
            except StageFailed as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            for r in results:
                print(f"stage {r.stage}: {r.status} ({r.seconds:.0f} s) -> {r.notebook}")
            return 0
        cfg = load_config(args.params, overrides)
        if args.command == "push":
            from dualdistill.sharing import push_to_hub

            print(json.dumps(push_to_hub(cfg, repo_id=args.repo_id, model=args.model, dataset=args.dataset,
                                         private=args.private), indent=2))
            return 0
        summary = resolve_stage(args.command)(cfg)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
