"""Benchmark registry: a benchmark is data (lm-evaluation-harness style).

    from dualdistill.data.benchmarks import BENCHMARKS, benchmark_source
    src = benchmark_source("aime2025", limit=10)      # a DataSource for cfg.data.test

Each :class:`Benchmark` names its dataset (a :class:`~dualdistill.config.DataSource`), its prompt
format, its answer extractor, the paper's column it corresponds to, and a ``version`` that is
bumped whenever the data, the prompt or the extraction rule changes; evaluation stores the version
in every record and in the key hash, so old samples are never mixed with new ones.

The four DualDistill test sets are read from ``../shared/data/dualdistill/test`` (override the
``shared`` directory with ``DUALDISTILL_SHARED``); ``synthetic`` is the embedded world's test split.
The paper's own results table is :mod:`dualdistill.report.paper_results`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdistill.common.repository import REPO_ROOT
from dualdistill.config import DataSource
from dualdistill.formats import formatting

PROMPTS: dict[str, Callable[..., str]] = {"r1": formatting.build_prompt}
EXTRACTORS: dict[str, Callable[[str], str | None]] = {"boxed": formatting.extract_final_answer}


def shared_dir() -> Path:
    """The shared directory next to the repo (``DUALDISTILL_SHARED`` overrides it)."""
    return Path(os.environ.get("DUALDISTILL_SHARED") or REPO_ROOT.parent / "shared")


def dualdistill_data_dir() -> Path:
    return shared_dir() / "data" / "dualdistill"


@dataclass(frozen=True)
class Benchmark:
    """One evaluation set: dataset + prompt + extractor + version."""

    name: str
    kind: str  # DataSource.kind
    file: str | None  # path under the DualDistill data dir (kind dualdistill)
    n_problems: int | None  # size of the full set (synthetic: set by the world config)
    version: str
    paper_column: str | None = None  # column of the paper's table (METHOD §1)
    prompt: str = "r1"
    extractor: str = "boxed"
    description: str = ""

    def source(self, *, limit: int | None = None, **fields: Any) -> DataSource:
        """A DataSource for ``cfg.data.test``."""
        if self.kind == "dualdistill":
            path = dualdistill_data_dir() / (self.file or "")
            return DataSource(kind="dualdistill", name=self.name, path=str(path), limit=limit, **fields)
        return DataSource(kind=self.kind, name=self.name, split="test", limit=limit, **fields)

    def build_prompt(self, problem: str, *, code: bool) -> str:
        return PROMPTS[self.prompt](problem, code=code)

    def extract(self, response: str) -> str | None:
        return EXTRACTORS[self.extractor](response)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("aime2025", "dualdistill", "test/aime2025.jsonl", 30, "1", "AIME", description="AIME 2025 I+II"),
        Benchmark("amc", "dualdistill", "test/amc.jsonl", 83, "1", "AMC", description="AMC 2022-2023"),
        Benchmark("combinatorics300", "dualdistill", "test/combinatorics300.jsonl", 300, "1", "Comb300",
                  description="Combinatorics300 (agentic-favoured)"),
        Benchmark("math500", "dualdistill", "test/math500_test.jsonl", 500, "1", "MATH500",
                  description="MATH-500 (Lightman et al.)"),
        Benchmark("synthetic", "synthetic", None, None, "1",
                  description="the embedded world's test split: computation and insight families"),
    ]
}

def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def benchmark_source(name: str, *, limit: int | None = None, **fields: Any) -> DataSource:
    """DataSource of a registered benchmark, e.g. for ``cfg.data.test``."""
    return get_benchmark(name).source(limit=limit, **fields)


def benchmark_name(src: DataSource) -> str:
    """The name a configured test source is reported under: its ``name``, else the file stem
    (``math500_test`` is reported as ``math500``), else its kind."""
    if src.name:
        return src.name
    if src.path:
        stem = Path(src.path).stem
        for b in BENCHMARKS.values():
            if b.file and Path(b.file).stem == stem:
                return b.name
        return stem
    return src.kind


def benchmark_version(name: str) -> str:
    """Registered version, or ``custom`` for sources outside the registry."""
    return BENCHMARKS[name].version if name in BENCHMARKS else "custom"


def paper_column(name: str) -> str | None:
    return BENCHMARKS[name].paper_column if name in BENCHMARKS else None
