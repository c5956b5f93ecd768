"""Cards for the Hub (offline), the CLI's stage registry and its errors, the runner's stage selection."""

from __future__ import annotations

import json

import pytest

from dualdistill import cli
from dualdistill.artifacts.stage_table import STAGES, get_stage
from dualdistill.config import RunConfig
from dualdistill.pipeline.papermill_runner import NOTEBOOK_DIR, selected_stages
from dualdistill.pipeline.sharing import dataset_card, model_card


def test_model_card_reports_measured_rows():
    cfg = RunConfig(run_name="demo")
    rows = [{"benchmark": "world_test", "budget": "S", "accuracy": 0.625, "tool_use_rate": 0.5, "n_samples": 40}]
    card = model_card(cfg, "S2", rows)
    assert card.startswith("---\nlibrary_name: transformers")
    assert "| world_test | S | 62.5 | 50.0 | 40 |" in card and "self-distillation" in card
    assert "No evaluation recorded" in model_card(cfg, "S1", [])


def test_dataset_card_counts():
    card = dataset_card(RunConfig(run_name="demo"), "t1", [{"case": "01"}, {"case": "01"}, {"case": "10"}])
    assert "3 examples" in card and "| 01 | 2 |" in card and "| 10 | 1 |" in card


def test_every_stage_command_resolves():
    parser = cli.build_parser()
    for stage in STAGES:
        assert get_stage(stage.verb) is get_stage(stage.number) is stage
        args = parser.parse_args([stage.verb, "p.yaml", "--set", "a.b=1", "--quiet"])
        assert (args.command, args.params, args.set, args.quiet) == (stage.verb, "p.yaml", ["a.b=1"], True)
        assert callable(stage.function())


def test_cli_reports_params_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"run_name": "x", "sft": {"lr": 1}}))
    assert cli.main(["compose", str(bad)]) == 2
    assert "sft.lr: unknown field" in capsys.readouterr().err


def test_stage_selection_and_notebooks_exist():
    assert selected_stages("03") == ["03", "04", "05", "06"]
    assert selected_stages(None, ["05", "06"]) == ["05", "06"]
    with pytest.raises(ValueError, match="unknown stage"):
        selected_stages("07")
    assert selected_stages("distill") == ["03", "04", "05", "06"]
    for stage in STAGES:
        assert (NOTEBOOK_DIR / stage.notebook).exists(), stage.notebook
