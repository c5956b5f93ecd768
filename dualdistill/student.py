"""Prepare the student S0's starting point before any stage needs its tokenizer.

For the embedded default (``student.model: tiny``) this builds — or reuses, when its config and
corpus hash match — the tiny Qwen2 model and its locally trained tokenizer at
``outputs/<run>/models/tiny_base``. For a hub model or a local directory there is nothing to build:
the model is loaded where it is needed.
"""

from __future__ import annotations

import time
from typing import Any

from dualdistill.config import RunConfig, TinyModelConfig
from dualdistill.paths import RunPaths


def is_tiny(cfg: RunConfig) -> bool:
    return cfg.student.model == "tiny"


def student_tokenizer_path(cfg: RunConfig) -> str:
    """Where the student's tokenizer is: the tiny base, or the model id/path itself."""
    return str(RunPaths.of(cfg).tiny_base) if is_tiny(cfg) else cfg.student.model


def prepare_student(cfg: RunConfig) -> dict[str, Any]:
    """Build or reuse the tiny base model (embedded default); a no-op summary for real models."""
    if not is_tiny(cfg):
        return {"student": cfg.student.model, "built": False}
    from dualdistill.tiny import ensure_tiny, read_build_meta
    from dualdistill.world import tokenizer_corpus

    start = time.time()
    out = ensure_tiny(cfg.student.tiny or TinyModelConfig(), RunPaths.of(cfg).tiny_base, tokenizer_corpus(cfg.world))
    meta = read_build_meta(out) or {}
    return {"student": "tiny", "path": str(out), "seconds": round(time.time() - start, 1),
            **{k: meta[k] for k in ("n_params", "vocab_size", "hash") if k in meta}}
