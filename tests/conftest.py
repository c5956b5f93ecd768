"""Shared fixtures: where ../shared lives, and the repo root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALDISTILL_SHARED", REPO.parent / "shared"))
DUALDISTILL_DATA = SHARED / "data" / "dualdistill"
OFFICIAL_REFERENCE = SHARED / "reference" / "DualDistill"  # the official code, an oracle for tests

SHARED_FILES = {
    "aime2025": ("test/aime2025.jsonl", 30),
    "amc": ("test/amc.jsonl", 83),
    "combinatorics300": ("test/combinatorics300.jsonl", 300),
    "math500": ("test/math500_test.jsonl", 500),
    "whole_training_set": ("train/whole_training_set.jsonl", 985),
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DUALDISTILL_DATA.is_dir():
        raise FileNotFoundError(f"shared data not found at {DUALDISTILL_DATA}; set DUALDISTILL_SHARED")
    return DUALDISTILL_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
