"""The paper's reported results (METHOD §1), as data: the reference rows beside a run's own tables.

    PAPER_RESULTS["Agentic-R1-7B"]["Comb300"]     # (36.9, 49.4): accuracy in % at budgets S and L

Columns are the paper's (``data.benchmarks.Benchmark.paper_column`` maps a benchmark to one);
DeepMath-L is not available here. Reported tool use: ``PAPER_TOOL_USE``.
"""

from __future__ import annotations

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
