"""The figures of a run (stage 06, the sweep): each ``plot_*`` takes data, saves a PNG and returns the Figure.

    plot_accuracy(rows, "outputs/demo/plots/accuracy.png")     # rows: stage 05's summary rows
    save_figure(fig, "outputs/demo/plots/x.png")                # the one rule every PNG is written by

An unchanged figure leaves its file alone, so a file's time says when the figure last changed (a
rerun of stage 06 touches no plot whose data did not change).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # headless outside notebooks
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from dualdistill.algorithm.selection import selection_counts, selection_sweep  # noqa: E402
from dualdistill.common.store import write_atomic  # noqa: E402
from dualdistill.report.metrics import FAMILY_PREFIX  # noqa: E402
from dualdistill.report.tables import point_value, summary_frame  # noqa: E402


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110) -> Any:
    """Save ``fig`` (tight layout) as PNG at ``path``, unless the file already holds these bytes."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_atomic(path, buf.getvalue())
    return fig


BETA_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # β values of the sweep


def _rows_frame(rows: list[dict[str, Any]], subset: str = "all") -> pd.DataFrame:
    df = summary_frame(rows)
    if df.empty:
        raise ValueError("no summary rows to plot")
    if subset == "family":
        return df[df["subset"].str.startswith(FAMILY_PREFIX)].copy()
    return df[df["subset"] == subset].copy()


def plot_accuracy(rows: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """Accuracy by benchmark and model, one panel per budget."""
    df = _rows_frame(rows)
    budgets = list(dict.fromkeys(df["budget"]))
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4), squeeze=False, sharey=True)
    for ax, bud in zip(axes[0], budgets, strict=True):
        sns.barplot(data=df[df["budget"] == bud], x="benchmark", y="accuracy", hue="model", ax=ax)
        ax.set_title(f"budget {bud}")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
    return save_figure(fig, path)


def plot_tool_use(rows: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """Tool-use rate (share of samples with a code call) by benchmark and, where the problems have
    families, by family; per model. The first budget is shown."""
    df = summary_frame(rows)
    if df.empty:
        raise ValueError("no summary rows to plot")
    budget = df["budget"].iloc[0]
    df = df[df["budget"] == budget]
    bench = df[df["subset"] == "all"]
    fam = df[df["subset"].str.startswith(FAMILY_PREFIX)].copy()
    panels = [("benchmark", bench)] + ([("family", fam)] if not fam.empty else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False, sharey=True)
    for ax, (by, data) in zip(axes[0], panels, strict=True):
        sns.barplot(data=data, x=by, y="tool_use_rate", hue="model", ax=ax)
        ax.set_ylim(0, 1)
        ax.set_title(f"tool use by {by} (budget {budget})")
        ax.tick_params(axis="x", labelrotation=30)
    return save_figure(fig, path)


def plot_tokens_vs_accuracy(rows: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """Mean tokens per sample against accuracy, one panel per benchmark, one colour per model; with
    several budgets a model's points are joined in budget order and the marker says the budget
    (no text labels: they overlapped)."""
    df = _rows_frame(rows)
    benches = list(dict.fromkeys(df["benchmark"]))
    budgets = list(dict.fromkeys(df["budget"]))
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches) + 1.6, 4.2), squeeze=False, sharey=True)
    models = list(dict.fromkeys(df["model"]))
    palette = dict(zip(models, sns.color_palette(n_colors=len(models)), strict=True))
    for i, (ax, bench) in enumerate(zip(axes[0], benches, strict=True)):
        part = df[df["benchmark"] == bench]
        if len(budgets) > 1:
            for model, pts in part.groupby("model", sort=False):
                pts = pts.set_index("budget").reindex(budgets).dropna(subset=["mean_tokens"])
                ax.plot(pts["mean_tokens"], pts["accuracy"], color=palette[model], lw=1, alpha=0.6)
        sns.scatterplot(data=part, x="mean_tokens", y="accuracy", hue="model", hue_order=models, palette=palette,
                        style="budget" if len(budgets) > 1 else None, s=90, ax=ax, legend=i == len(benches) - 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("mean tokens per sample")
        ax.set_title(bench + ("" if len(budgets) > 1 else f" · budget {budgets[0]}"))
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    return save_figure(fig, path)


def plot_composition(examples: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """T1 composition cases (01: switch after a failure, 11: verify, 10: first only) by first
    teacher and by subset."""
    if not examples:
        raise ValueError("no T1 examples to plot")
    df = pd.DataFrame(
        {
            "case": [str(e.get("case")) for e in examples],
            "first": [str(e.get("first")) for e in examples],
            "subset": [str(e.get("subset")) for e in examples],
        }
    )
    order = [c for c in ("01", "11", "10") if c in set(df["case"])] + sorted(set(df["case"]) - {"01", "11", "10"})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.countplot(data=df, x="case", hue="first", order=order, ax=axes[0])
    axes[0].set_title("T1 cases by first teacher")
    sns.countplot(data=df, x="subset", hue="case", hue_order=order, ax=axes[1])
    axes[1].set_title("T1 cases by subset")
    for ax, title in zip(axes, ("first teacher", "case"), strict=True):  # legends beside the bars, not on them
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title=title)
    return save_figure(fig, path)


def plot_gbar_hist(gbar: Sequence[float], path: str | Path, *, k: int | None = None) -> plt.Figure:
    """Histogram of ḡ (per-problem mean correctness of S1's K samples)."""
    if not len(gbar):
        raise ValueError("no ḡ values to plot")
    k = k or 10
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.histplot(x=list(gbar), bins=np.linspace(-0.5 / k, 1 + 0.5 / k, k + 2), ax=ax)
    ax.set_xlabel("ḡ (mean correctness of S1's samples)")
    ax.set_ylabel("problems")
    return save_figure(fig, path)


def plot_selection_sweep(
    gbar: Sequence[float],
    path: str | Path,
    *,
    beta1s: Sequence[float] = BETA_GRID,
    beta2s: Sequence[float] = BETA_GRID,
    current: tuple[float, float] | None = None,
    built: dict[str, Any] | None = None,
) -> plt.Figure:
    """Examples selected over a β1 x β2 grid (left; β1 > β2 is not a valid config and stays blank),
    and the verify count against β1 and the correct count against β2 (right). "Selected" is verify +
    correct problems: T2's size before stage 04 leaves out problems without a text-teacher solution
    or a usable sample; ``built`` (stage 04's selection report at the config's β) says how many it built."""
    if not len(gbar):
        raise ValueError("no ḡ values to plot")
    sweep = pd.DataFrame(selection_sweep(gbar, beta1s, beta2s))
    grid = sweep.pivot(index="beta1", columns="beta2", values="examples")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.3, 1]})
    sns.heatmap(grid, annot=True, fmt=".0f", annot_kws={"fontsize": 7}, cmap="viridis", ax=axes[0],
                cbar_kws={"label": "selected (verify + correct)"})
    axes[0].set_title("selected for T2 (verify + correct), before stage 04's checks", fontsize=10)
    if current is not None:
        line = f"config β1 = {current[0]:g}, β2 = {current[1]:g}: {selection_counts(gbar, *current)['examples']} selected"
        if built is not None:
            no_sample = sum(len(v) for v in (built.get("no_student_sample") or {}).values())
            line += (f"; stage 04 built {built.get('n_examples', 0)} T2 examples (left out: "
                     f"{built.get('n_no_teacher_solution', 0)} problems without a text-teacher solution, "
                     f"{no_sample} examples without a usable sample of S1)")
        fig.suptitle(line, fontsize=10)
    verify = [selection_counts(gbar, b, 1.0)["verify"] for b in beta1s]
    correct = [selection_counts(gbar, 0.0, b)["correct"] for b in beta2s]
    axes[1].plot(beta1s, verify, marker="o", label="verify (ḡ<1, ḡ>β1) vs β1")
    axes[1].plot(beta2s, correct, marker="s", label="correct (ḡ<β2) vs β2")
    axes[1].set_xlabel("β")
    axes[1].set_ylabel("problems")
    axes[1].legend()
    return save_figure(fig, path)


# --- a sweep's figure ---------------------------------------------------------------------------
def _axes_of(rows: list[dict[str, Any]], fields: list[str] | None) -> tuple[str | None, str | None]:
    """(x field, hue field): the field with most values on x, a second one as lines; None for x means
    the points in order."""
    fields = fields or list(rows[0]["values"])
    varied = [f for f in fields if len({repr(r["values"].get(f)) for r in rows}) > 1] or fields
    if len(varied) > 2 or not all(isinstance(r["values"].get(f), int | float) for r in rows for f in varied[:1]):
        return None, None
    varied = sorted(varied, key=lambda f: -len({repr(r["values"].get(f)) for r in rows}))
    return varied[0], (varied[1] if len(varied) > 1 else None)


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, *, fields: list[str] | None = None) -> Any:
    """S2's accuracy and tool use per subset against the swept fields (S1 dashed; error bars: the
    standard error of S2 − S1), and T2's size (examples, verify, correct) — the first benchmark and
    budget. With two fields one is the x axis and the other one line each."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no sweep rows to plot")
    xf, hf = _axes_of(rows, fields)
    first = rows[0]["results"][0]
    key = (first["benchmark"], first["budget"])
    subsets = list(dict.fromkeys(r["subset"] for row in rows for r in row["results"]))
    hues = sorted({row["values"].get(hf) for row in rows}, key=repr) if hf else [None]
    ncol = max(len(subsets), 3)
    fig, axes = plt.subplots(3, ncol, figsize=(3.6 * ncol, 9.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def series(hue: Any) -> list[dict[str, Any]]:
        pts = [r for r in rows if hf is None or r["values"].get(hf) == hue]
        return sorted(pts, key=lambda r: r["values"][xf]) if xf else pts

    def xs(pts: list[dict[str, Any]]) -> list[Any]:
        return [r["values"][xf] for r in pts] if xf else [rows.index(r) for r in pts]

    label = (lambda h: f"{hf.rsplit('.', 1)[-1]} = {point_value(h)}") if hf else (lambda h: "S2")
    for j, subset in enumerate(subsets):
        for i, (metric, s1m, err) in enumerate((("s2_accuracy", "s1_accuracy", "se"), ("s2_tool_use", "s1_tool_use", "tool_se"))):
            ax = axes[i][j]
            s1_values = set()
            for c, hue in enumerate(hues):
                pts = series(hue)
                res = [next((r for r in p["results"] if (r["benchmark"], r["budget"]) == key and r["subset"] == subset), {})
                       for p in pts]
                ys = [100 * (r.get(metric) or 0) for r in res]
                es = [100 * (r.get(err) or 0) for r in res]
                ax.errorbar(xs(pts), ys, yerr=es, marker="o", capsize=3, color=colors[c % len(colors)], label=label(hue))
                s1_values |= {r.get(s1m) for r in res if r.get(s1m) is not None}
            for v in s1_values:
                ax.axhline(100 * v, color="black", ls="--", lw=1, label="S1")
            ax.set_ylim(-3, 103)
            ax.set_title(f"{subset}: S2 {'accuracy' if i == 0 else 'tool use'} (%)", fontsize=10)
            if j == 0:
                ax.legend(fontsize=7, frameon=False)
    for j, (what, title) in enumerate((("examples", "T2 examples"), ("verify", "verify examples"),
                                       ("correct", "correct examples"))):
        ax = axes[2][j]
        for c, hue in enumerate(hues):
            pts = series(hue)
            ax.plot(xs(pts), [p["t2"].get(what) or 0 for p in pts], marker="s", color=colors[c % len(colors)],
                    label=label(hue))
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
    for j in range(3, ncol):
        axes[2][j].axis("off")
    for ax in axes.flat:
        if ax.axison:
            ax.set_xlabel(xf.rsplit(".", 1)[-1] if xf else "point")
            if not xf:
                ax.set_xticks(range(len(rows)), [r["point"] for r in rows], rotation=30, fontsize=7)
    fig.suptitle(f"sweep over {', '.join(fields or rows[0]['values'])} · {key[0]} / budget {key[1]} · S1 dashed, "
                 "error bars: SE of S2 − S1 (paired by problem)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
