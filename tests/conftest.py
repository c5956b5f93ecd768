"""Shared fixtures: where ../shared lives, the repo root, and the smoke run (slow tier)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke.yaml"
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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke pipeline (notebooks 01 -> 06 through papermill) once per session, with what
    ``dualdistill run`` shows on the terminal captured: (config, stage results, terminal text).
    Its outputs are under ``cfg.output_dir`` / ``smoke``; tests/test_pipeline.py checks them and
    tests/test_lab_browser.py opens the notebooks on them in JupyterLab."""
    from dualdistill.config import load_config
    from dualdistill.pipeline.papermill_runner import run_pipeline

    out = tmp_path_factory.mktemp("smoke")
    overrides = {"output_dir": str(out)}
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
        results = run_pipeline(SMOKE, overrides, progress=True)
    return load_config(SMOKE, overrides), results, shown.getvalue()
