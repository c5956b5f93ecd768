"""Results tables of stage 05's metric rows, in the paper's layout, with the paper's rows beside them.

    table = results_table(rows)                      # strict score (the project's grader)
    table = results_table(rows, score="official")    # official-comparable score, with the paper's rows
    print(table_markdown(table))                     # | model (strict score) | aime2025 (S/L) | ... |

Two scores per row (``dualdistill.report.metrics``): ``strict`` — the project's grader, the default — and
``official`` — the verdict of the official ``compute_score`` (substring matches included), the rule
the paper's numbers were computed with. The paper's rows ("paper: …") are only set beside the
official-comparable score, and the table says which score it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dualdistill.data.benchmarks import paper_column
from dualdistill.report.paper_results import PAPER_BUDGETS, PAPER_COLUMNS, PAPER_RESULTS

AVG = "avg"
REFERENCE_PREFIX = "paper: "
SCORES = {"strict": "accuracy", "official": "official_accuracy"}  # score -> metric of the summary rows
SCORE_LABELS = {"strict": "strict score: the project's grader",
                "official": "official-comparable score: the official compute_score's verdict"}


# --- tables --------------------------------------------------------------------------------------
def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def results_table(
    rows: list[dict[str, Any]],
    *,
    budgets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    score: str = "strict",
    reference: bool | None = None,
) -> pd.DataFrame:
    """Accuracy (%) shaped like the paper's table: rows = models (then, for ``score="official"``, the
    paper's rows for the benchmarks it reports), columns = (benchmark, budget) plus (avg, budget). A
    model's avg is the mean over all benchmarks shown (missing if one is missing); a paper row's avg
    is the mean over the shown benchmarks the paper reports. Subset "all" rows of the summary are
    used. ``score``: ``strict`` or ``official`` (:data:`SCORES`); ``reference`` (default: with the
    official score) adds the paper's rows — only beside the official-comparable score. The table's
    ``attrs["score"]`` names the score and ``attrs["incomplete"]`` the models with failed samples in a
    cell shown, with how many (``table_markdown`` prints both)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {score!r}")
    reference = score == "official" if reference is None else reference
    if reference and score != "official":
        raise ValueError("the paper's rows are compared with the official-comparable score: use score='official'")
    df = summary_frame(rows)
    if df.empty:
        return pd.DataFrame()
    metric = SCORES[score]
    if metric not in df.columns:
        df = df.assign(**{metric: None})
    df = df[df["subset"] == "all"]
    budgets = list(budgets) if budgets else list(dict.fromkeys(df["budget"]))
    models = list(models) if models else list(dict.fromkeys(df["model"]))
    benchmarks = list(dict.fromkeys(df["benchmark"]))
    cols = pd.MultiIndex.from_tuples([(b, bud) for b in [*benchmarks, AVG] for bud in budgets],
                                     names=["benchmark", "budget"])
    table = pd.DataFrame(index=pd.Index(models, name="model"), columns=cols, dtype=float)
    for r in df.itertuples():
        value = getattr(r, metric)
        if r.model in models and r.budget in budgets and value is not None and not pd.isna(value):
            table.loc[r.model, (r.benchmark, r.budget)] = 100.0 * value
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
    table.attrs["score"] = score
    table.attrs["incomplete"] = incomplete_models(df[df["budget"].isin(budgets)])
    return table


def incomplete_models(df: pd.DataFrame) -> dict[str, int]:
    """Failed samples per model, over summary rows that are not complete (older rows without the
    flag count by their ``n_failed``)."""
    if "n_failed" not in df.columns:
        return {}
    failed = df[df["n_failed"].fillna(0).astype(int) > 0]
    return {str(m): int(n) for m, n in failed.groupby("model")["n_failed"].sum().items()}


def disagreement_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per (model, benchmark, budget): the strict and the official-comparable accuracy (%) and the
    share of samples (%) on which the two verdicts differ. Subset "all" rows."""
    df = summary_frame(rows)
    if df.empty:
        return pd.DataFrame()
    df = df[df["subset"] == "all"]
    out = pd.DataFrame({"model": df["model"], "benchmark": df["benchmark"], "budget": df["budget"],
                        "strict": 100.0 * df["accuracy"].astype(float)})
    for col, src in (("official", "official_accuracy"), ("disagreement", "score_disagreement")):
        out[col] = 100.0 * df[src].astype(float) if src in df.columns else np.nan
    return out.reset_index(drop=True)


def frame_markdown(df: pd.DataFrame) -> str:
    """A flat frame as a markdown table (numbers with one decimal, missing as —)."""
    if df.empty:
        return "_no evaluation records_\n"
    lines = [f"| {' | '.join(map(str, df.columns))} |", "|---" * len(df.columns) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.1f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The paper's layout: one column per benchmark, cells ``S/L`` (accuracy in %)."""
    if table.empty:
        return "_no evaluation records_\n"
    benchmarks = list(dict.fromkeys(table.columns.get_level_values(0)))
    budgets = list(dict.fromkeys(table.columns.get_level_values(1)))
    slash = "/".join(budgets)
    score = table.attrs.get("score")
    first = f"model ({SCORE_LABELS[score].split(':')[0]})" if score in SCORE_LABELS else "model"
    header = f"| {first} | {' | '.join(f'{b} ({slash})' for b in benchmarks)} |"
    lines = [header, "|---" * (len(benchmarks) + 1) + "|"]
    incomplete = table.attrs.get("incomplete", {})
    for model, row in table.iterrows():
        cells = ["/".join(_fmt(row[(b, bud)]) for bud in budgets) for b in benchmarks]
        label = f"{model} ⚠ incomplete ({incomplete[model]} failed)" if model in incomplete else model
        lines.append(f"| {label} | {' | '.join(cells)} |")
    if incomplete:
        lines.append("\n⚠ incomplete: some samples failed (the engine or endpoint failed after its retries); those "
                     "cells rest on the samples that finished. Rerun stage 05 to retry them.")
    return "\n".join(lines) + "\n"


def paper_table_markdown() -> str:
    """The paper's full table (METHOD §1), S/L in %."""
    cols = [*PAPER_COLUMNS, AVG]
    lines = [f"| model | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"]
    for name, res in PAPER_RESULTS.items():
        lines.append(f"| {name} | {' | '.join('/'.join(_fmt(v) for v in res[c]) for c in cols)} |")
    return "\n".join(lines) + "\n"


def paired_table_markdown(rows: list[dict[str, Any]], metric: str = "accuracy") -> str:
    """Stage 05's paired differences (``summary.json`` key ``paired``) as one line per comparison,
    benchmark and budget, one column per subset: ``+3.2 ± 1.1`` points (B − A, standard error of the
    per-problem differences) and the problems compared."""
    rows = [r for r in rows if r.get("metric") == metric]
    if not rows:
        return "_no paired differences (stage 05 writes them when S1 is evaluated beside another model)_\n"
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["against"], r["benchmark"], r["budget"]), {})[r["subset"]] = r
    lines = [f"| {metric}: model − against | benchmark (budget) | {' | '.join(subsets)} |",
             "|---" * (len(subsets) + 2) + "|"]
    for (model, against, bench, budget), cells in groups.items():
        vals = []
        for s in subsets:
            c = cells.get(s)
            vals.append("—" if not c or c.get("delta") is None else
                        f"{100 * c['delta']:+.1f} ± {100 * c['se']:.1f} (n {c['n_problems']}"
                        + (f", {c['n_dropped']} dropped" if c.get("n_dropped") else "") + ")")
        lines.append(f"| {model} − {against} | {bench} ({budget}) | {' | '.join(vals)} |")
    return "\n".join(lines) + "\n"


# --- a sweep's table ----------------------------------------------------------------------------
def point_value(value: Any) -> str:
    """A swept value as written in point names, tables and legends (``0.9``, ``1``, ``True``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pct(x: float | None, signed: bool = False) -> str:
    return "" if x is None else (f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}")


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """One line per point: its values, T2's size, and per subset S2's accuracy (S2 − S1 ± SE) and tool
    use (S1's beside it) — the first benchmark and budget."""
    if not rows:
        return "_no sweep points_"
    fields = list(rows[0]["values"])
    subsets = list(dict.fromkeys(r["subset"] for row in rows for r in row["results"]))
    head = [*(f.rsplit(".", 1)[-1] for f in fields), "T2 (verify/correct)"]
    head += [f"{s}: S2 acc (Δ ± SE)" for s in subsets] + [f"{s}: tool use S2 (S1)" for s in subsets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        res = {r["subset"]: r for r in row["results"] if (r["benchmark"], r["budget"]) ==
               (row["results"][0]["benchmark"], row["results"][0]["budget"])}
        t2 = row["t2"]
        cells = [point_value(row["values"].get(f)) for f in fields]
        cells.append(f"{t2['examples']} ({t2['verify']}/{t2['correct']})" + (" · base run" if row.get("base") else ""))
        for s in subsets:
            r = res.get(s, {})
            cells.append(f"{_pct(r.get('s2_accuracy'))} ({_pct(r.get('delta'), True)} ± {_pct(r.get('se'))})")
        for s in subsets:
            r = res.get(s, {})
            cells.append(f"{_pct(r.get('s2_tool_use'))} ({_pct(r.get('s1_tool_use'))})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
