"""A smoke run in the paper's formats (params/smoke-official.yaml): stages 01 and 02, and stage 04's
sampling and selection with the scripted agentic teacher standing in for S1 (no training), write T1
and T2 whose official-format exports the official format check and the official dataloader accept.

    .venv/bin/python -m pytest tests/test_smoke_official.py -q -m slow
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import read_jsonl
from dualdistill.config import PolicyConfig, load_config
from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.rollout.policy import build_policy
from dualdistill.stages import compose, teacher_rollouts
from dualdistill.stages.self_distillation import self_distill
from tests import official_ref as ref

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = load_config(REPO / "params" / "smoke-official.yaml",
                      {"output_dir": str(tmp_path_factory.mktemp("smoke_official"))})
    teacher_rollouts.run(cfg, progress=False)
    t1_summary = compose.run(cfg, progress=False)
    stand_in = build_policy(PolicyConfig(backend="scripted", model="agent"), seed=cfg.seed)
    t2_summary = self_distill(cfg, until="select", policy=stand_in, progress=False)
    return {"cfg": cfg, "t1": t1_summary, "t2": t2_summary}


def _check_export(examples: list[dict], rows: list[dict], summary: dict) -> None:
    check = ref.load("math_utils/format_checking.py").check_format
    assert examples and len(rows) == len(examples) == summary["rows"]
    assert summary["skipped"] == {"format": 0, "no_problem_text": 0}
    assert all(check(r["synthetic_data"]) for r in rows)
    for ex, row in zip(examples, rows, strict=True):
        assert ex["text_format"] == "official" and row["problem"] == ex["problem_text"]
        assert row["synthetic_data"] == official.render(F.as_segments(ex["segments"]))
        assert ex["prompt"] == F.build_prompt(ex["problem_text"], code=True, style="official")
    data = ref.dataloader().TrainData(rows, ref.CharTokenizer(), code_instruction=None)
    assert len(data.items) == len(rows)  # the official dataloader keeps every line


@pytest.mark.slow
def test_t1_is_written_in_the_official_format(smoke_official: dict[str, Any]) -> None:
    paths = RunPaths.of(smoke_official["cfg"])
    t1, rows = read_jsonl(paths.t1), read_jsonl(paths.t1_official)
    _check_export(t1, rows, smoke_official["t1"]["official_export"])
    fixes = {"agent": [], "text": []}
    for ex, row in zip(t1, rows, strict=True):
        if ex["case"] == "01":
            fixes[ex["first"]].append(row["synthetic_data"])
    assert fixes["agent"] and fixes["text"]
    for text in fixes["agent"]:  # code→text opens a new think block after the agent's attempt
        assert f"</think>\n<think>\n{F.CODE_TO_TEXT}\n\n" in text or f"</executor>\n<think>\n{F.CODE_TO_TEXT}\n\n" in text
    for text in fixes["text"]:  # text→code ends the text teacher's (first) think block
        assert text.split("</think>", 1)[0].endswith(f"\n\n{F.TEXT_TO_CODE}\n")


@pytest.mark.slow
def test_t2_is_written_in_the_official_format(smoke_official: dict[str, Any]) -> None:
    paths = RunPaths.of(smoke_official["cfg"])
    t2, rows = read_jsonl(paths.t2), read_jsonl(paths.t2_official)
    _check_export(t2, rows, smoke_official["t2"]["official_export"])
    for ex, row in zip(t2, rows, strict=True):
        sentence = F.VERIFY_WITH_TEXT if ex["rule"] == "verify" else F.CODE_TO_TEXT
        assert f"\n<think>\n{sentence}\n\n" in row["synthetic_data"]
    samples = read_jsonl(paths.sd_samples)
    request = samples[0]["trajectory"]["prompt"] + F.GENERATION_PREFIX
    assert request == F.build_prompt(samples[0]["problem"]["problem"], code=True, style="official-eval")
    assert all(isinstance(s["official_correct"], bool) for s in samples)
