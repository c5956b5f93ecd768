"""Crash-safe JSONL: torn lines are never data; corrupt complete lines are errors naming the line."""

from __future__ import annotations

import pytest

from dualdistill.common.store import CorruptRecordError, JsonlStore, record_key, write_jsonl


def test_append_read_keys(tmp_path):
    store = JsonlStore(tmp_path / "r.jsonl")
    for i in range(3):
        store.append({"key": record_key("p", i), "v": i})
    assert [r["v"] for r in store.read()] == [0, 1, 2]
    assert store.keys() == {"p|0", "p|1", "p|2"}


def test_torn_last_line_ignored_then_cut(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "b", "v"')  # crash mid-write
    store = JsonlStore(path)
    assert [r["key"] for r in store.read()] == ["a"]
    store.append({"key": "c"})
    assert [r["key"] for r in JsonlStore(path).read()] == ["a", "c"]
    assert path.read_text().count("\n") == 2


def test_corrupt_complete_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a"}\nnot json\n')
    with pytest.raises(CorruptRecordError, match=r"r\.jsonl:2"):
        JsonlStore(path).read()


def test_latest_supersedes(tmp_path):
    store = JsonlStore(tmp_path / "r.jsonl")
    store.append({"key": "a", "status": "failed"})
    store.append({"key": "a", "status": "ok"})
    assert store.latest()["a"]["status"] == "ok"


def test_write_jsonl_atomic(tmp_path):
    path = write_jsonl(tmp_path / "sub" / "x.jsonl", [{"a": 1}, {"a": 2}])
    assert [r["a"] for r in JsonlStore(path).read()] == [1, 2]
    assert not list(path.parent.glob("*.tmp"))
