"""Results tables of stage 05's metric rows, in the paper's layout, with the paper's rows beside them.

    table = results_table(rows)            # rows: report/summary.json["eval"]
    print(table_markdown(table))           # | model | aime2025 (S/L) | ... |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dualdistill.benchmarks import PAPER_BUDGETS, PAPER_COLUMNS, PAPER_RESULTS, paper_column

AVG = "avg"
REFERENCE_PREFIX = "paper: "


# --- tables --------------------------------------------------------------------------------------
def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def results_table(
    rows: list[dict[str, Any]],
    *,
    budgets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    reference: bool = True,
) -> pd.DataFrame:
    """Accuracy (%) shaped like the paper's table: rows = models (then the paper's rows for the
    benchmarks it reports), columns = (benchmark, budget) plus (avg, budget). A model's avg is the
    mean over all benchmarks shown (missing if one is missing); a paper row's avg is the mean over
    the shown benchmarks the paper reports. Subset "all" rows of the summary are used."""
    df = summary_frame(rows)
    if df.empty:
        return pd.DataFrame()
    df = df[df["subset"] == "all"]
    budgets = list(budgets) if budgets else list(dict.fromkeys(df["budget"]))
    models = list(models) if models else list(dict.fromkeys(df["model"]))
    benchmarks = list(dict.fromkeys(df["benchmark"]))
    cols = pd.MultiIndex.from_tuples([(b, bud) for b in [*benchmarks, AVG] for bud in budgets],
                                     names=["benchmark", "budget"])
    table = pd.DataFrame(index=pd.Index(models, name="model"), columns=cols, dtype=float)
    for r in df.itertuples():
        if r.model in models and r.budget in budgets and r.accuracy is not None:
            table.loc[r.model, (r.benchmark, r.budget)] = 100.0 * r.accuracy
    if reference:
        mapped = {b: paper_column(b) for b in benchmarks if paper_column(b)}
        if mapped:
            for name, res in PAPER_RESULTS.items():
                label = REFERENCE_PREFIX + name
                table.loc[label] = np.nan
                for bench, col in mapped.items():
                    for bud in budgets:
                        if bud in PAPER_BUDGETS:
                            table.loc[label, (bench, bud)] = res[col][PAPER_BUDGETS.index(bud)]
    refs = table.index.str.startswith(REFERENCE_PREFIX)
    for bud in budgets:
        cells = table[[(b, bud) for b in benchmarks]]
        table[(AVG, bud)] = cells.mean(axis=1, skipna=False)
        table.loc[refs, (AVG, bud)] = cells[refs].mean(axis=1, skipna=True)
    return table


def _fmt(x: float) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.1f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The paper's layout: one column per benchmark, cells ``S/L`` (accuracy in %)."""
    if table.empty:
        return "_no evaluation records_\n"
    benchmarks = list(dict.fromkeys(table.columns.get_level_values(0)))
    budgets = list(dict.fromkeys(table.columns.get_level_values(1)))
    slash = "/".join(budgets)
    header = f"| model | {' | '.join(f'{b} ({slash})' for b in benchmarks)} |"
    lines = [header, "|---" * (len(benchmarks) + 1) + "|"]
    for model, row in table.iterrows():
        cells = ["/".join(_fmt(row[(b, bud)]) for bud in budgets) for b in benchmarks]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def paper_table_markdown() -> str:
    """The paper's full table (METHOD §1), S/L in %."""
    cols = [*PAPER_COLUMNS, AVG]
    lines = [f"| model | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"]
    for name, res in PAPER_RESULTS.items():
        lines.append(f"| {name} | {' | '.join('/'.join(_fmt(v) for v in res[c]) for c in cols)} |")
    return "\n".join(lines) + "\n"
