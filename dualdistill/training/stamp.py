"""A trained model's stamp and identity: what made it, so that a rerun can tell it is current.

    read_stamp("outputs/demo/models/S1")           # {"hash", "config", "summary"} of its SFT run, or None
    model_fingerprint("outputs/demo/models/S1")    # "sft:<hash>" (a stamped model), "dir:<hash>", or a hub id

Every model the SFT writes (``training.sft.train_sft``) gets a stamp, ``sft_summary.json``, beside its
weights; evaluation and self-distillation key their records by the fingerprint of the weights they used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import read_json

SFT_STAMP = "sft_summary.json"  # in a trained model dir: hash + config + summary of its SFT run


def read_stamp(model_dir: str | Path) -> dict[str, Any] | None:
    """The stamp of a model the SFT wrote, or None."""
    p = Path(model_dir) / SFT_STAMP
    return read_json(p) if p.is_file() else None


def model_fingerprint(path: str | Path) -> str:
    """Identity of a model: a trained model dir by its SFT stamp hash; another local dir by its
    config and weight files (names, sizes); anything else (a hub id) by its name."""
    p = Path(path)
    if not p.is_dir():
        return str(path)
    stamp = p / SFT_STAMP
    if stamp.is_file():
        return "sft:" + read_json(stamp).get("hash", "")
    files = sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.is_file() and f.name != SFT_STAMP)
    config = (p / "config.json").read_text() if (p / "config.json").is_file() else ""
    return "dir:" + stable_hash([config, files])

