"""Params schema: every shipped params file loads; each kind of error names its field and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dualdistill.config import ConfigError, RunConfig, config_from_dict, load_config, parse_override

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_params_load(path):
    cfg = load_config(path)
    assert cfg.run_name and cfg.source == str(path.resolve())  # one form whichever way the path was given


def test_required_params_files_exist():
    names = {p.name for p in (REPO / "params").glob("*.yaml")}
    assert {"smoke.yaml", "smoke-official.yaml", "demo.yaml", "paper-7b-qlora.yaml", "paper-7b-full.yaml",
            "eval-agentic-r1.yaml"} <= names


def test_paper_defaults():
    cfg = RunConfig(run_name="x")
    assert (cfg.self_distill.k, cfg.self_distill.beta1, cfg.self_distill.beta2) == (16, 0.0, 0.9)
    assert cfg.self_distill.temperature == 0.6 and cfg.eval.samples == 5 and cfg.eval.budgets["S"] == 4096
    assert cfg.teachers.max_code_calls == 10 and cfg.sandbox.timeout == 3.0
    assert (cfg.sft.learning_rate, cfg.sft.lr_scheduler_type, cfg.sft.num_train_epochs) == (1e-5, "constant", 4.0)
    assert cfg.sft.max_length == 16384 and cfg.sft.over_length == "drop"


@pytest.mark.parametrize("name", ["paper-7b-full.yaml", "paper-7b-qlora.yaml"])
def test_paper_params_use_the_papers_setup(name):
    """The official problem list joined with DeepMath-103K's R1 solutions, the official prompts and
    transition placement, T1 balanced by teacher outcomes, S2 trained on examples up to 8,192 tokens."""
    cfg = load_config(REPO / "params" / name)
    (src,) = cfg.data.train
    assert src.path.endswith("train/whole_training_set.jsonl") and src.limit is None
    assert src.join.path == "zwhe99/DeepMath-103K" and src.join.problem_field == "question"
    assert src.join.fields == ["r1_solution_1", "r1_solution_2", "r1_solution_3"]
    assert cfg.teachers.text.backend == "replay" and cfg.teachers.text.replay_fields == src.join.fields
    assert cfg.student.prompt_style == "official" and cfg.composition.transition_style == "official"
    assert (cfg.composition.balance, cfg.composition.balance_by) == ("subset_equal", "outcome")
    assert cfg.sft.max_length == 16384 and cfg.self_distill.sft.max_length == 8192
    if name == "paper-7b-full.yaml":  # "as in the official code": the official numerics, both SFT runs
        assert cfg.sft.recipe == cfg.self_distill.sft.recipe == "official"
        assert (cfg.sft.learning_rate, cfg.sft.num_train_epochs, cfg.sft.per_device_train_batch_size) == (1e-5, 4, 1)
    else:
        assert cfg.self_distill.sft.method == cfg.sft.method == "qlora"


def test_eval_agentic_r1_params():
    cfg = load_config(REPO / "params" / "eval-agentic-r1.yaml")
    (model,) = cfg.eval.models
    assert model.policy.model == "VanishD/Agentic-R1" and cfg.student.prompt_style == "official"
    assert [s.name for s in cfg.data.test] == ["combinatorics300", "math500", "aime2025", "amc"]
    assert (cfg.eval.samples, cfg.eval.temperature, cfg.eval.max_code_calls) == (5, 0.6, 10)


def _write(tmp_path, data) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"run_name": "x", "sft": {"metod": "full"}}, "sft.metod", "unknown field"),
        ({"run_name": "x", "self_distill": {"k": "many"}}, "self_distill.k", "integer"),
        ({"run_name": "x", "self_distill": {"k": 0}}, "self_distill.k", "greater than or equal to 1"),
        ({"run_name": "x", "self_distill": {"beta1": 0.95, "beta2": 0.9}}, "self_distill", "beta1"),
        ({"run_name": "x", "self_distill": {"beta2": 1.5}}, "self_distill.beta2", "less than or equal"),
        ({"run_name": "x", "sft": {"method": "8bit"}}, "sft.method", "full"),
        ({"run_name": "x", "eval": {"budgets": {}}}, "eval", "budget"),
        ({"run_name": "bad name!"}, "run_name", "pattern"),
        ({"sft": {}}, "run_name", "Field required"),
        ({"run_name": "x", "data": {"test": [{"kind": "jsonl"}]}}, "data.test.0", "needs a path"),
        ({"run_name": "x", "composition": {"transitions": {"fix:text_to_code": "x"}}}, "composition", "keys"),
        ({"run_name": "x", "student": {"tiny": {"hidden_size": 100, "num_attention_heads": 3}}}, "student.tiny", "divisible"),
    ],
)
def test_errors_name_field_and_file(tmp_path, data, field, words):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and f": {field}" in msg and words in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("run_name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_overrides_and_hash(tmp_path):
    path = _write(tmp_path, {"run_name": "x"})
    cfg = load_config(path, overrides={"self_distill.beta2": 0.5, "sft.method": "qlora"})
    assert cfg.self_distill.beta2 == 0.5 and cfg.sft.method == "qlora"
    assert cfg.hash() != load_config(path).hash()
    assert cfg.hash("teachers") == load_config(path).hash("teachers")
    assert parse_override("eval.samples=3") == ("eval.samples", 3)
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_override("eval.samples")
    with pytest.raises(ConfigError, match="self_distill.betta"):
        load_config(path, overrides={"self_distill.betta": 0.5})


def test_save_round_trip(tmp_path):
    cfg = config_from_dict({"run_name": "x", "self_distill": {"k": 3}})
    saved = cfg.save(tmp_path / "config.yaml")
    data = yaml.safe_load(saved.read_text())
    assert data.pop("_hash") == cfg.hash()
    assert config_from_dict(data).hash() == cfg.hash()
