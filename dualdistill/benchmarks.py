"""Benchmark registry: a benchmark is data (lm-evaluation-harness style).

    from dualdistill.benchmarks import BENCHMARKS, benchmark_source
    src = benchmark_source("aime2025", limit=10)      # a DataSource for cfg.data.test

Each :class:`Benchmark` names its dataset (a :class:`~dualdistill.config.DataSource`), its prompt
format, its answer extractor, the paper's column it corresponds to, and a ``version`` that is
bumped whenever the data, the prompt or the extraction rule changes; evaluation stores the version
in every record and in the key hash, so old samples are never mixed with new ones.

The four DualDistill test sets are read from ``../shared/data/dualdistill/test`` (override the
``shared`` directory with ``DUALDISTILL_SHARED``); ``synthetic`` is the embedded world's test split.
The paper's results table (METHOD §1) lives here too, as data, for the reference rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdistill import formatting
from dualdistill.config import DataSource

REPO_ROOT = Path(__file__).resolve().parents[1]

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

# Paper's results (5 samples; accuracy in %, (budget S, budget L)); DeepMath-L is not available here.
PAPER_COLUMNS = ["DeepMath-L", "Comb300", "MATH500", "AIME", "AMC"]
PAPER_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    "Qwen2.5-7B-Instruct w/o tool": {"DeepMath-L": (17.2, 17.5), "Comb300": (21.8, 21.8), "MATH500": (75.1, 75.2),
                                     "AIME": (8.0, 8.0), "AMC": (42.9, 42.9), "avg": (33.0, 33.1)},
    "Qwen2.5-7B-Instruct w/ tool": {"DeepMath-L": (34.7, 34.7), "Comb300": (28.9, 28.9), "MATH500": (70.2, 70.2),
                                    "AIME": (14.7, 14.7), "AMC": (51.1, 51.1), "avg": (39.9, 39.9)},
    "DeepSeek-R1-Distill-7B": {"DeepMath-L": (34.7, 56.3), "Comb300": (34.7, 44.5), "MATH500": (83.1, 89.2),
                               "AIME": (23.3, 40.7), "AMC": (61.2, 84.8), "avg": (47.4, 63.1)},
    "Agentic-R1-7B": {"DeepMath-L": (37.0, 59.3), "Comb300": (36.9, 49.4), "MATH500": (80.0, 82.4),
                      "AIME": (28.0, 40.7), "AMC": (64.3, 82.2), "avg": (49.3, 62.8)},
    "Agentic-R1-7B-SD": {"DeepMath-L": (40.0, 65.3), "Comb300": (38.2, 52.0), "MATH500": (82.5, 93.3),
                         "AIME": (27.3, 40.7), "AMC": (66.3, 85.8), "avg": (50.9, 67.4)},
}
PAPER_BUDGETS = ("S", "L")
# Reported tool use of Agentic-R1-7B (share of problems with a code call).
PAPER_TOOL_USE = {"Comb300": 79.2, "AMC": 52.0}


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
