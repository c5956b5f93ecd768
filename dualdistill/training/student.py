"""The student S0's starting point and its tokenizer, before any stage trains it.

For the embedded default (``student.model: tiny``) :func:`prepare_student` builds — or reuses, when
its config and corpus hash match — the tiny Qwen2 model and its locally trained tokenizer at
``outputs/<run>/models/tiny_base``. For a hub model or a local directory there is nothing to build:
the model is loaded where it is needed. :func:`load_student_tokenizer` is the one way to get the
student's tokenizer (it counts budgets and makes the loss masks).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dualdistill.artifacts.paths import RunPaths, require
from dualdistill.config import RunConfig, TinyModelConfig
from dualdistill.training.tiny_model import ensure_tiny, read_build_meta
from dualdistill.world import tokenizer_corpus


def is_tiny(cfg: RunConfig) -> bool:
    return cfg.student.model == "tiny"


def student_tokenizer_path(cfg: RunConfig) -> str:
    """Where the student's tokenizer is: the tiny base, or the model id/path itself."""
    return str(RunPaths.of(cfg).tiny_base) if is_tiny(cfg) else cfg.student.model


def load_student_tokenizer(cfg: RunConfig, *, local_only: bool = False) -> Any:
    """The student's tokenizer. The tiny base must have been built (stage 01); a hub id is loaded by
    transformers unless ``local_only``, which returns None for anything but a local directory."""
    path = student_tokenizer_path(cfg)
    if local_only and not Path(path).is_dir():
        return None
    from transformers import AutoTokenizer  # a heavy import: only when a tokenizer is loaded

    if is_tiny(cfg):
        return AutoTokenizer.from_pretrained(require("01", Path(path), "the tiny student (model and tokenizer)"))
    return AutoTokenizer.from_pretrained(path)


def prepare_student(cfg: RunConfig) -> dict[str, Any]:
    """Build or reuse the tiny base model (embedded default); a no-op summary for real models."""
    if not is_tiny(cfg):
        return {"student": cfg.student.model, "built": False}
    start = time.time()
    out = ensure_tiny(cfg.student.tiny or TinyModelConfig(), RunPaths.of(cfg).tiny_base, tokenizer_corpus(cfg.world))
    meta = read_build_meta(out) or {}
    return {"student": "tiny", "path": str(out), "seconds": round(time.time() - start, 1),
            **{k: meta[k] for k in ("n_params", "vocab_size", "hash") if k in meta}}


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """Which tokenizer counted budgets or made masks, for the run's ledger (``artifacts.record_ran``)."""
    if tokenizer is None:
        return {"tokenizer": None}
    return {"tokenizer": str(getattr(tokenizer, "name_or_path", "")), "tokenizer_class": type(tokenizer).__name__,
            "tokenizer_size": len(tokenizer)}
