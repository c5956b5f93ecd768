"""The repository root: params files, notebooks and server commands name paths relative to it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
