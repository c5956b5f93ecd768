"""Problem loading: the five shared files, generic JSONL, HF datasets (offline), malformed rows, dedup."""

from __future__ import annotations

import json

import pytest

from dualdistill.config import DataSource
from dualdistill.loaders import load_source, load_sources, remove_near_duplicates
from dualdistill.problem import MalformedRecordError, Problem, normalize_gold
from tests.conftest import SHARED_FILES


@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_shared_files_load(shared_data, name):
    rel, count = SHARED_FILES[name]
    problems = load_source(DataSource(kind="dualdistill", path=str(shared_data / rel), name=name))
    assert len(problems) == count
    assert all(p.problem and p.answer for p in problems)
    assert len({p.id for p in problems}) == count
    assert all(p.source == name for p in problems)


def test_schema_details(shared_data):
    amc = load_source(DataSource(kind="dualdistill", path=str(shared_data / "test/amc.jsonl")))
    assert amc[0].answer == "142"  # 142.0 is the integer 142
    comb = load_source(DataSource(kind="dualdistill", path=str(shared_data / "test/combinatorics300.jsonl")))
    assert comb[0].answer == "12636" and comb[0].problem.startswith("A3.")
    math500 = load_source(DataSource(kind="dualdistill", path=str(shared_data / "test/math500_test.jsonl")))
    assert math500[0].answer.startswith("\\left( 3")
    assert math500[0].meta["subject"] == "Precalculus"


@pytest.mark.parametrize(
    "value, expected", [(142.0, "142"), (2.5, "2.5"), (7, "7"), (" 12 ", "12"), ("3.0", "3"), ("\\frac{1}{2}", "\\frac{1}{2}")]
)
def test_normalize_gold(value, expected):
    assert normalize_gold(value) == expected


def test_generic_jsonl_with_field_map(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"What is {i}+1?", "a": i + 1, "uid": f"u{i}", "kind": "easy"}) for i in range(3)) + "\n")
    src = DataSource(kind="jsonl", path=str(path), field_map={"problem": "q", "answer": "a", "id": "uid", "subset": "kind"})
    problems = load_source(src)
    assert [p.id for p in problems] == ["mine/u0", "mine/u1", "mine/u2"]
    assert problems[2].answer == "3" and problems[0].subset == "easy"


def test_malformed_row_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "ok?", "answer": "1"}\n{"problem": "", "answer": "2"}\n{"problem": "x"}\nnot json\n')
    with pytest.raises(MalformedRecordError, match=r"bad\.jsonl:2: empty problem"):
        load_source(DataSource(kind="jsonl", path=str(path)))
    problems = load_source(DataSource(kind="jsonl", path=str(path), on_malformed="skip"))
    assert len(problems) == 1


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_source(DataSource(kind="jsonl", path=str(tmp_path / "nope.jsonl")))


def test_hf_dataset_offline(tmp_path):
    """The hub path (datasets) on a local dataset with DeepMath-103K's columns; r1 traces kept in meta."""
    import datasets

    rows = {
        "question": ["Compute 2^10.", "Find 3!."],
        "final_answer": ["1024", "6"],
        "difficulty": [3.0, 1.0],
        "r1_solution_1": ["<think>\n2^10=1024\n</think>\n\\boxed{1024}", "<think>\n6\n</think>\n\\boxed{6}"],
        "r1_solution_2": ["a", "b"],
        "r1_solution_3": ["c", "d"],
    }
    parquet = tmp_path / "deepmath.parquet"
    datasets.Dataset.from_dict(rows).to_parquet(str(parquet))
    src = DataSource(kind="hf", path="parquet", split="train", name="deepmath")
    # data_files are passed through the generic loader of datasets: kind=hf, path=builder name
    import dualdistill.loaders as P

    orig = datasets.load_dataset
    try:
        datasets.load_dataset = lambda path, split: orig(path, data_files=str(parquet), split=split)
        problems = P.load_source(src)
    finally:
        datasets.load_dataset = orig
    assert [p.answer for p in problems] == ["1024", "6"]
    assert problems[0].meta["r1_solution_1"].startswith("<think>")
    # a saved dataset directory loads without any hub access
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    saved = load_source(DataSource(kind="hf", path=str(tmp_path / "saved"), name="saved"))
    assert len(saved) == 2 and saved[1].problem == "Find 3!."


def test_near_duplicates_removed():
    test = [Problem("t/0", "How many ways can 5 people sit around a round table?", "24", "t")]
    train = [
        Problem("a/0", "How many ways can 5 people sit around a round table ?", "24", "a"),
        Problem("a/1", "Compute the sum of the digits of 2^100.", "115", "a"),
    ]
    kept, removed = remove_near_duplicates(train, test, threshold=90)
    assert [p.id for p in kept] == ["a/1"] and [p.id for p in removed] == ["a/0"]


def test_duplicate_ids_across_sources_rejected(shared_data):
    src = DataSource(kind="dualdistill", path=str(shared_data / "test/aime2025.jsonl"))
    with pytest.raises(ValueError, match="duplicate problem id"):
        load_sources([src, src])
