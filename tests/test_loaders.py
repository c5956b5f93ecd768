"""Problem loading: the five shared files, generic JSONL, HF datasets (offline), malformed rows, dedup."""

from __future__ import annotations

import json

import pytest

from dualdistill.config import DataSource
from dualdistill.data.loaders import load_source, load_sources, remove_near_duplicates
from dualdistill.formats.problem import MalformedRecordError, Problem, normalize_gold
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
    import dualdistill.data.loaders as P

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


# --- the paper's problem list joined with DeepMath-103K's R1 solutions ------------------------------------
def _deepmath_rows(problems: list[dict]) -> list[dict]:
    """DeepMath-103K's columns for the listed problems (in another order) and for problems not listed."""
    rows = [{"question": p["problem"], "final_answer": str(p["answer"]), "difficulty": 5.0,
             **{f"r1_solution_{k}": f"Okay, solution {k} of row {i}.\n</think>\n\\boxed{{{p['answer']}}}" for k in (1, 2, 3)}}
            for i, p in enumerate(problems)]
    extra = [{"question": f"Unlisted problem {i}?", "final_answer": "1", "difficulty": 3.0,
              **{f"r1_solution_{k}": "x</think>\\boxed{1}" for k in (1, 2, 3)}} for i in range(40)]
    return list(reversed(rows)) + extra


def test_official_problem_list_joined_with_deepmath_r1_solutions(shared_data, tmp_path):
    """The 985 official problems get the R1 solutions of the DeepMath row with the same text — the same
    rows the official extraction script (run here as the oracle) pairs them with."""
    import datasets

    from tests import official_ref as ref

    listed = [json.loads(line) for line in open(shared_data / "train" / "whole_training_set.jsonl")]
    rows = _deepmath_rows(listed)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "deepmath"))
    src = DataSource(kind="dualdistill", name="deepmath", path=str(shared_data / "train" / "whole_training_set.jsonl"),
                     join={"path": str(tmp_path / "deepmath"), "problem_field": "question"})
    problems = load_source(src)
    assert len(problems) == 985 and all(p.meta["r1_solution_3"].startswith("Okay, solution 3 of row") for p in problems)

    (tmp_path / "official" / "dataset" / "train").mkdir(parents=True)
    (tmp_path / "official" / "dataset" / "train" / "whole_training_set.jsonl").write_text(
        (shared_data / "train" / "whole_training_set.jsonl").read_text())
    ref.run_extract_training_solution(tmp_path / "official", rows)
    theirs = [json.loads(line) for line in open(tmp_path / "official" / "dataset" / "train"
                                                / "whole_training_set_with_solution.jsonl")]
    by_text = {p.problem: p for p in problems}
    assert len(theirs) == 985
    for row in theirs:  # the official script picks one of the three at random and wraps the answer part
        ours = by_text[row["problem"].strip()]
        thinking = row["solution"].split("</think>")[0]
        assert any(ours.meta[f"r1_solution_{k}"].split("</think>")[0] == thinking for k in (1, 2, 3))


def test_join_missing_rows_and_columns(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"problem": "Known?", "answer": 1}) + "\n"
                                      + json.dumps({"problem": "Unknown?", "answer": 2}) + "\n")
    (tmp_path / "dm.jsonl").write_text(json.dumps({"question": " Known? ", "r1_solution_1": "a", "r1_solution_2": "b",
                                                   "r1_solution_3": "c"}) + "\n")
    join = {"path": str(tmp_path / "dm.jsonl")}
    with pytest.raises(MalformedRecordError, match="1 of 2 problems have no row .* p/1: 'Unknown\\?'"):
        load_source(DataSource(kind="jsonl", name="p", path=str(tmp_path / "p.jsonl"), join=join))
    kept = load_source(DataSource(kind="jsonl", name="p", path=str(tmp_path / "p.jsonl"),
                                  join={**join, "on_missing": "keep"}))
    assert kept[0].meta["r1_solution_2"] == "b" and "r1_solution_1" not in kept[1].meta
    with pytest.raises(MalformedRecordError, match="no column \\['solution'\\]"):
        load_source(DataSource(kind="jsonl", name="p", path=str(tmp_path / "p.jsonl"),
                               join={**join, "fields": ["solution"]}))


def test_train_problems_drop_near_duplicates_of_the_test_sets(tmp_path):
    from dualdistill.config import DataConfig
    from dualdistill.data.loaders import train_problems

    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"problem": t, "answer": 1}) + "\n" for t in (
        "What is the remainder when 2^100 is divided by 7?", "How many primes are below 100?")))
    (tmp_path / "test.jsonl").write_text(json.dumps({"problem": "What is the remainder when 2^100 is divided by 7 ?",
                                                     "answer": 2}) + "\n")
    data = DataConfig(train=[DataSource(kind="jsonl", name="tr", path=str(tmp_path / "train.jsonl"))],
                      test=[DataSource(kind="jsonl", name="te", path=str(tmp_path / "test.jsonl"))])
    kept, removed = train_problems(data)
    assert [p.id for p in kept] == ["tr/1"] and [p.id for p in removed] == ["tr/0"]
