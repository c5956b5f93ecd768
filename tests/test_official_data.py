"""The released T1 (schema of ``VanishD/DualDistill`` as the official code reads it) imported from local
datasets through ``datasets`` (offline), stage 02 on it, and the official-format export read back by
the official format check."""

from __future__ import annotations

import json

import pytest

from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import read_jsonl
from dualdistill.config import ConfigError, ReleasedT1Config, config_from_dict
from dualdistill.data.official_data import export_official, released_examples
from dualdistill.formats import formatting as F
from dualdistill.formats import official
from dualdistill.stages import compose as compose_stage
from tests import official_ref as ref


def check_format(text: str) -> bool:
    return bool(ref.load("math_utils/format_checking.py").check_format(text))


ATTEMPT = ("<think>\nLet me compute.\n</think>\n<code>\n```python\nprint(2**10)\n```\n</code>\n"
           "<executor>\n1024\n</executor>\n")
SOLUTION = "Okay, 2^10 = 1024.\n</think>\n<answer>\n\nSo $\\boxed{1024}$.\n</answer>"
ROWS = [
    {"problem": "What is $2^{10}$?", "synthetic_data": ATTEMPT + "<answer>\n\\boxed{1024}\n</answer>"},
    {"problem": "What is $2^{10}$? ", "synthetic_data": ATTEMPT.replace("1024\n</exec", "1000\n</exec")
     + "\n<think>\n" + F.CODE_TO_TEXT + "\n\n" + SOLUTION},
    {"problem": "Compute $3^4$.", "synthetic_data": f"<think>\nBy hand is long. {F.TEXT_TO_CODE}\n</think>\n<code>\n"
     "print(3**4)\n</code>\n<executor>\n81\n</executor>\n<answer>\n\\boxed{81}\n</answer>\ntrailing words"},
    {"problem": "Compute $3^4$.", "synthetic_data": ATTEMPT + "\n<think>\n" + F.VERIFY_WITH_TEXT + "\n\n" + SOLUTION},
    {"problem": "Broken", "synthetic_data": "<think>\nunclosed <code>\nx\n</code>"},  # refused by the format check
    {"problem": "Stray", "synthetic_data": "<think>\na\n</think>\nstray words\n<answer>\n1\n</answer>\n<code>\n"},
]


@pytest.fixture(params=["save_to_disk", "dataset_dict", "parquet", "jsonl"])
def released_path(request: pytest.FixtureRequest, tmp_path) -> str:
    """The rows as a local dataset in each way ``datasets`` stores one."""
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    kind = request.param
    if kind == "save_to_disk":
        ds.save_to_disk(str(tmp_path / "ds"))
        return str(tmp_path / "ds")
    if kind == "dataset_dict":
        datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
        return str(tmp_path / "dd")
    if kind == "parquet":
        ds.to_parquet(str(tmp_path / "t1.parquet"))
        return str(tmp_path / "t1.parquet")
    (tmp_path / "t1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return str(tmp_path / "t1.jsonl")


def test_import_follows_the_official_dataloader(released_path: str) -> None:
    examples, report = released_examples(ReleasedT1Config(path=released_path))
    keep = [i for i, r in enumerate(ROWS) if check_format(r["synthetic_data"])]
    assert report["rows"] == len(ROWS) and report["kept"] == len(examples) == len(keep) == 4
    assert report["refused_by_format_check"] == len(ROWS) - len(keep)
    for ex, i in zip(examples, keep, strict=True):
        row = ROWS[i]
        cut = row["synthetic_data"].split("</answer>")[0] + "</answer>"  # what the dataloader trains on
        assert official.render(F.as_segments(ex["segments"])) == cut
        assert ex["text_format"] == "official" and ex["problem_text"] == row["problem"]
        assert ex["prompt"] == F.build_prompt(row["problem"], code=True, style="official")
    assert [ex["case"] for ex in examples] == ["10", "01", "01", "11"]
    assert [ex["first"] for ex in examples] == ["agent", "agent", "text", "agent"]
    assert [ex["mask_until_first_transition"] for ex in examples] == [False, True, True, False]
    code = next(s for s in F.as_segments(examples[0]["segments"]) if s.kind == "code")
    assert code.meta["status"] == "ok" and code.text.startswith("```python")  # kept as written, fences and all


def test_import_limit_columns_and_mask_policy(tmp_path) -> None:
    path = tmp_path / "t1.jsonl"
    path.write_text("".join(json.dumps({"question": r["problem"], "traj": r["synthetic_data"], "final_answer": 7}) + "\n"
                            for r in ROWS))
    src = ReleasedT1Config(path=str(path), problem_field="question", text_field="traj", limit=2)
    examples, report = released_examples(src, mask=False)
    assert report["rows"] == 2 and [ex["answer"] for ex in examples] == ["7", "7"]
    assert not any(ex["mask_until_first_transition"] for ex in examples)
    with pytest.raises(ValueError, match="no column \\['problem', 'synthetic_data'\\]"):
        released_examples(ReleasedT1Config(path=str(path)))


def test_a_verify_or_mid_block_sentence_is_not_a_turn_over(tmp_path) -> None:
    """The dataloader masks before text→code anywhere and before code→text right after ``<think>\\n``."""
    mid = "<think>\nHmm. " + F.CODE_TO_TEXT + " Go on.\n</think>\n<answer>\n\\boxed{1}\n</answer>"
    path = tmp_path / "t1.jsonl"
    path.write_text(json.dumps({"problem": "P", "synthetic_data": mid}) + "\n")
    (ex,), _ = released_examples(ReleasedT1Config(path=str(path)))
    assert not ex["mask_until_first_transition"] and ex["case"] == "10"
    assert official.render(F.as_segments(ex["segments"])) == mid


def test_stage_02_imports_and_exports_what_the_official_code_reads(tmp_path, released_path: str) -> None:
    cfg = config_from_dict({"run_name": "rel", "output_dir": str(tmp_path / "out"),
                            "student": {"prompt_style": "official"}, "composition": {"released": {"path": released_path}}})
    summary = compose_stage.run(cfg, progress=False)
    paths = RunPaths.of(cfg)
    assert summary["n_t1"] == 4 and summary["released"]["refused_by_format_check"] == 2
    assert summary["masked_before_transition"] == 2 and read_metrics(cfg, "02")["n_t1"] == 4
    assert len(read_jsonl(summary["paths"]["dropped"])) == 2 and paths.t1_side("stats.csv").is_file()
    rows = read_jsonl(paths.t1_official)
    assert len(rows) == 4 and all(check_format(r["synthetic_data"]) for r in rows)
    kept = [r for r in ROWS if check_format(r["synthetic_data"])]
    assert [r["synthetic_data"] for r in rows] == [r["synthetic_data"].split("</answer>")[0] + "</answer>" for r in kept]
    data = ref.dataloader().TrainData(rows, ref.CharTokenizer(), code_instruction=None)
    assert len(data.items) == 4  # the official dataloader keeps every exported line


def test_released_and_baselines_do_not_mix() -> None:
    with pytest.raises(ConfigError, match="baselines are trained on teacher rollouts"):
        config_from_dict({"run_name": "x", "composition": {"released": {}}, "baselines": {"text_only": "text"}})
    assert config_from_dict({"run_name": "x", "composition": {"released": {}}}).composition.released.path == (
        "VanishD/DualDistill")


def test_export_places_project_transitions_and_skips_lines_outside_blocks(tmp_path) -> None:
    def ex(segs: list[F.Segment], **kw) -> dict:
        return {"segments": [s.to_dict() for s in segs], "problem_text": "P", "answer": "1", **kw}

    good = ex([F.Segment("think", "a"), F.Segment("code", "print(1)"), F.Segment("executor", "1"),
               F.Segment("transition", F.CODE_TO_TEXT), F.Segment("think", "b"), F.Segment("answer", "\\boxed{1}")])
    notice = ex([F.Segment("think", "a"), F.Segment("notice", F.CALL_CAP_NOTICE), F.Segment("think", "b"),
                 F.Segment("answer", "\\boxed{1}")])
    report = export_official([good, notice, {**good, "problem_text": None}], tmp_path / "o.jsonl")
    assert report["rows"] == 1 and report["skipped"] == {"format": 1, "no_problem_text": 1}
    (row,) = read_jsonl(tmp_path / "o.jsonl")
    assert f"<think>\n{F.CODE_TO_TEXT}\n\nb\n</think>" in row["synthetic_data"] and check_format(row["synthetic_data"])
    assert not check_format(official.render(F.as_segments(notice["segments"])))


def test_a_sandbox_timeout_is_not_a_failure_to_the_official_dataloader() -> None:
    """What README says of exporting the project's trajectories: the official dataloader finds a failed
    block by markers in its executor text, and the project's sandbox timeout message has none of them,
    so the official trainer trains a timed-out block that the project's masks leave out."""
    from dualdistill.sandbox.python_sandbox import TIMEOUT_MESSAGE
    from dualdistill.training import masking

    segs = [F.Segment("think", "Brute force."), F.Segment("code", "while True: pass", {"status": "timeout"}),
            F.Segment("executor", TIMEOUT_MESSAGE.format(timeout=3.0), {"status": "timeout"}),
            F.Segment("answer", "\\boxed{1}")]
    ex = {"prompt": F.build_prompt("P", code=True, style="official"), "problem_text": "P", "answer": "1",
          "segments": [s.to_dict() for s in segs], "text_format": "official"}
    (row,) = [{"problem": "P", "synthetic_data": official.render(segs)}]
    ((ids, labels),) = [(i.tolist(), lab.tolist()) for i, lab in
                        ref.dataloader().TrainData([row], ref.CharTokenizer(), code_instruction=None).items]
    pos = row["synthetic_data"].index("while True")
    at = 1 + len(F.build_prompt("P", code=True, style="official", bos=False)) + pos  # one id per character after BOS
    assert chr(ids[at]) == "w" and labels[at] == ids[at]  # trained by the official dataloader
    ours = masking.trained_char_spans(ex["prompt"], segs, text_format="official")
    assert not any(s <= len(ex["prompt"]) + pos < e for s, e in ours)  # left out here
    assert official.code_statuses(row["synthetic_data"]) == ["ok"]  # the official rule reads it as a success
