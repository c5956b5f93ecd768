"""The figures of a run (stage 06, the sweep): each ``plot_*`` takes data, saves a PNG (and an SVG
beside it) and returns the Figure.

    plot_accuracy(rows, "outputs/demo/plots/accuracy.png", paired=paired)  # stage 05's summary rows
    save_figure(fig, "outputs/demo/plots/x.png")   # the one rule every figure is written by

Every figure uses one colour per model (:data:`MODEL_COLORS`, :func:`model_color`) and the method's
order of models (:func:`model_order`: S0, text_only, tool_only, S1, S2, then others); accuracies and
rates are drawn in %, with n in the titles. An unchanged figure leaves its files alone, so a file's
time says when the figure last changed (a rerun of stage 06 touches no plot whose data did not change).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.transforms

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
    """Save ``fig`` (tight layout) as PNG at ``path`` and as SVG beside it (same name, ``.svg``); a
    file that already holds these bytes is left alone."""
    fig.tight_layout()
    for fmt, target in (("png", Path(path)), ("svg", Path(path).with_suffix(".svg"))):
        buf = io.BytesIO()
        with plt.rc_context({"svg.hashsalt": "dualdistill"}):  # stable ids: an unchanged figure is unchanged bytes
            fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
        write_atomic(target, buf.getvalue())
    return fig


BETA_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # β values of the sweep

# one colour per model in every figure; the teachers share their baselines' colours
MODEL_ORDER = ("S0", "text_only", "tool_only", "S1", "S2")
MODEL_COLORS = {"S0": "#8d8d8d", "text_only": "#e09f3e", "tool_only": "#2a9d8f", "S1": "#3a6ea5", "S2": "#9d4edd"}
MODEL_MARKERS = {"S0": "o", "text_only": "s", "tool_only": "D", "S1": "^", "S2": "v"}
OTHER_COLORS = ("#c1121f", "#6a994e", "#bc6c25", "#577590", "#f28482")
TEACHER_COLORS = {"text": MODEL_COLORS["text_only"], "agent": MODEL_COLORS["tool_only"]}
# T1's composition cases (g1 g2: first, second teacher right?), named in words
CASE_NAMES = {"01": "01: wrong → right\n(switch)", "11": "11: right → right\n(verify)",
              "10": "10: right → wrong\n(first kept)"}
CASE_COLORS = {"01": "#d62828", "11": "#55a630", "10": "#b08968"}


def model_order(models: Sequence[str]) -> list[str]:
    """The models in the method's order: S0, text_only, tool_only, S1, S2, then the others as given."""
    models = list(dict.fromkeys(models))
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]


def model_color(model: str) -> str:
    """The one colour of ``model`` in every figure (a model outside :data:`MODEL_ORDER`: a stable pick)."""
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    return OTHER_COLORS[sum(map(ord, model)) % len(OTHER_COLORS)]


def subset_order(subsets: Sequence[str]) -> list[str]:
    """``all`` first, then the problems' subsets, then the families (as given)."""
    subsets = list(dict.fromkeys(subsets))
    plain = [s for s in subsets if s != "all" and not s.startswith(FAMILY_PREFIX)]
    return (["all"] if "all" in subsets else []) + plain + [s for s in subsets if s.startswith(FAMILY_PREFIX)]


def _pct(value: Any) -> float:
    return float("nan") if value is None else 100 * float(value)


def _rows_frame(rows: list[dict[str, Any]], subset: str = "all") -> pd.DataFrame:
    df = summary_frame(rows)
    if df.empty:
        raise ValueError("no summary rows to plot")
    if subset == "family":
        return df[df["subset"].str.startswith(FAMILY_PREFIX)].copy()
    return df[df["subset"] == subset].copy()


def accuracy_panels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What :func:`plot_accuracy` draws, one entry per (benchmark, budget, subset) panel: the models
    in order with accuracy and its standard error in %, and n problems (families left out)."""
    df = summary_frame(rows)
    if df.empty:
        raise ValueError("no summary rows to plot")
    df = df[~df["subset"].str.startswith(FAMILY_PREFIX)]
    out = []
    for (bench, budget), part in df.groupby(["benchmark", "budget"], sort=False):
        for subset in subset_order(list(part["subset"])):
            sub = part[part["subset"] == subset].set_index("model")
            models = model_order(list(sub.index))
            se = sub["accuracy_se"] if "accuracy_se" in sub else pd.Series(dtype=float)
            out.append({"benchmark": bench, "budget": budget, "subset": subset, "models": models,
                        "accuracy": [_pct(sub.loc[m, "accuracy"]) for m in models],
                        "se": [_pct(se.get(m)) for m in models],
                        "n_problems": int(sub["n_problems"].max())})
    return out


def paired_points(paired: Sequence[dict[str, Any]], benchmark: str, budget: str) -> list[dict[str, Any]]:
    """The accuracy differences of summary.json's ``paired`` rows for one benchmark and budget, in
    points: S2 − S1 first, then S1 − each baseline in the method's order; one entry per subset."""
    rows = [r for r in paired if r.get("metric", "accuracy") == "accuracy" and r["benchmark"] == benchmark
            and str(r["budget"]) == str(budget) and r.get("delta") is not None]
    against = model_order([r["against"] for r in rows if r["model"] == "S1"])
    pairs = [("S2", "S1")] + [("S1", a) for a in against]
    out = []
    for model, base in pairs:
        for r in rows:
            if (r["model"], r["against"]) == (model, base):
                out.append({"label": f"{model} − {base}", "model": model, "against": base, "subset": r["subset"],
                            "delta": 100 * r["delta"], "se": 100 * (r.get("se") or 0), "n": r["n_problems"]})
    return out


def _draw_paired(ax: Any, points: list[dict[str, Any]], subsets: list[str]) -> None:
    """Dots with ± SE bars, one row per (comparison, subset); the values as a column right of the axes."""
    labels = list(dict.fromkeys(p["label"] for p in points))
    markers = dict(zip(subsets, "osD^v<>", strict=False))
    height = 0.8 / max(len(subsets), 1)
    label_at = matplotlib.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    for p in points:
        i, j = labels.index(p["label"]), subsets.index(p["subset"]) if p["subset"] in subsets else 0
        y = i - 0.4 + height * (j + 0.5)
        color = model_color(p["against"] if p["model"] == "S1" else p["model"])
        ax.errorbar(p["delta"], y, xerr=p["se"], fmt=markers.get(p["subset"], "o"), color=color, capsize=3, ms=6)
        ax.text(1.03, y, f"{p['subset']}: {p['delta']:+.1f} ± {p['se']:.1f}", transform=label_at, va="center",
                fontsize=8, color=color)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    reach = max([5.0, *(abs(p["delta"]) + p["se"] for p in points)]) * 1.1
    ax.set_xlim(-reach, reach)
    ax.set_xlabel("difference (points), ± SE over problems")
    n = max((p["n"] for p in points), default=0)
    ax.set_title(f"paired differences, same problems (n = {n})", fontsize=10)


def plot_accuracy(rows: list[dict[str, Any]], path: str | Path,
                  paired: Sequence[dict[str, Any]] | None = None) -> plt.Figure:
    """Accuracy (%) per model on each subset, one row of panels per (benchmark, budget): bars in the
    method's order with the standard error over problems; the last panel of a row, the paired
    differences S2 − S1 and S1 − each baseline (± SE) of summary.json's ``paired`` rows."""
    panels = accuracy_panels(rows)
    keys = list(dict.fromkeys((p["benchmark"], p["budget"]) for p in panels))
    ncol = max(sum((p["benchmark"], p["budget"]) == k for p in panels) for k in keys) + 1
    fig, axes = plt.subplots(len(keys), ncol, figsize=(3.3 * (ncol - 1) + 7, 3.9 * len(keys)), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * (ncol - 1) + [1.5]})
    for r, (bench, budget) in enumerate(keys):
        mine = [p for p in panels if (p["benchmark"], p["budget"]) == (bench, budget)]
        for c in range(ncol - 1):
            ax = axes[r][c]
            if c >= len(mine):
                ax.axis("off")
                continue
            p = mine[c]
            xs = range(len(p["models"]))
            ax.bar(xs, p["accuracy"], color=[model_color(m) for m in p["models"]],
                          yerr=[0 if np.isnan(e) else e for e in p["se"]], capsize=3, ecolor="#333")
            for x, a, e in zip(xs, p["accuracy"], p["se"], strict=True):  # the value above its error bar
                ax.annotate(f"{a:.0f}", (x, a + (0 if np.isnan(e) else e)), xytext=(0, 3), textcoords="offset points",
                            ha="center", fontsize=8)
            ax.set_xticks(list(xs), p["models"], rotation=30, ha="right", fontsize=9)
            ax.set_ylim(0, 112)
            ax.set_ylabel("accuracy (%)" if c == 0 else "")
            ax.set_title(f"{bench} · {p['subset']} · budget {budget}\n(n = {p['n_problems']} problems)", fontsize=10)
        pts = paired_points(paired or [], bench, budget)
        if pts:
            _draw_paired(axes[r][-1], pts, [p["subset"] for p in mine])
        else:
            axes[r][-1].axis("off")
            axes[r][-1].text(0.5, 0.5, "no paired differences\nin summary.json (rerun stage 05)", ha="center",
                             va="center", fontsize=9, transform=axes[r][-1].transAxes)
    fig.suptitle("Accuracy per model and subset (mean over problems, error bars ± SE over problems) "
                 "and the paired differences", fontsize=11)
    return save_figure(fig, path)


def plot_tool_use(rows: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """Tool use (% of samples with a code call) per subset and family, one dot per model (a dot at 0
    is drawn and labelled), one panel per benchmark; the first budget."""
    df = summary_frame(rows)
    if df.empty:
        raise ValueError("no summary rows to plot")
    budget = df["budget"].iloc[0]
    df = df[df["budget"] == budget]
    benches = list(dict.fromkeys(df["benchmark"]))
    widths = [len(set(df[df["benchmark"] == b]["subset"])) for b in benches]
    fig, axes = plt.subplots(1, len(benches), figsize=(sum(1.3 * w + 1.5 for w in widths) + 1.8, 4.2),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, bench in zip(axes[0], benches, strict=True):
        part = df[df["benchmark"] == bench]
        subsets = subset_order(list(part["subset"]))
        models = model_order(list(part["model"]))
        step = 0.8 / len(models)
        for j, model in enumerate(models):
            sub = part[part["model"] == model].set_index("subset")
            xs = [i - 0.4 + step * (j + 0.5) for i in range(len(subsets))]
            ys = [_pct(sub["tool_use_rate"].get(s)) for s in subsets]
            ax.vlines(xs, 0, ys, color=model_color(model), lw=2, alpha=0.5)
            ax.scatter(xs, ys, color=model_color(model), marker=MODEL_MARKERS.get(model, "o"), s=45, zorder=3,
                       edgecolor="black", linewidth=0.5, label=model)
            for x, y in zip(xs, ys, strict=True):
                if not np.isnan(y):
                    ax.annotate(f"{y:.0f}", (x, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
        ax.set_xticks(range(len(subsets)), [s.removeprefix(FAMILY_PREFIX) for s in subsets], rotation=30, ha="right")
        ax.set_ylim(-6, 112)
        ax.axhline(0, color="#bbb", lw=0.8)
        ax.set_ylabel("samples that call code (%)")
        n = int(part[part["subset"] == "all"]["n_problems"].max())
        ax.set_title(f"{bench} · budget {budget} (n = {n} problems)", fontsize=10)
    axes[0][-1].legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle("Tool use: share of samples with at least one code call, per subset and family", fontsize=11)
    return save_figure(fig, path)


def plot_tokens_vs_accuracy(rows: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """Mean tokens per sample against accuracy (%), one panel per benchmark; each model its colour and
    marker (earlier models drawn larger, so a point under another shows as a ring); with several
    budgets a model's points are joined in budget order and labelled by budget."""
    df = _rows_frame(rows)
    benches = list(dict.fromkeys(df["benchmark"]))
    budgets = list(dict.fromkeys(df["budget"]))
    models = model_order(list(df["model"]))
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches) + 1.6, 4.2), squeeze=False, sharey=True)
    for ax, bench in zip(axes[0], benches, strict=True):
        part = df[df["benchmark"] == bench]
        for j, model in enumerate(models):
            pts = part[part["model"] == model].set_index("budget").reindex(budgets).dropna(subset=["mean_tokens"])
            if pts.empty:
                continue
            if len(budgets) > 1:
                ax.plot(pts["mean_tokens"], 100 * pts["accuracy"], color=model_color(model), lw=1, alpha=0.6)
                for bud, row in pts.iterrows():
                    ax.annotate(str(bud), (row["mean_tokens"], 100 * row["accuracy"]), xytext=(6, -3),
                                textcoords="offset points", fontsize=7, color=model_color(model))
            ax.scatter(pts["mean_tokens"], 100 * pts["accuracy"], s=260 - 40 * j, color=model_color(model),
                       marker=MODEL_MARKERS.get(model, "o"), edgecolor="black", linewidth=0.6, alpha=0.85,
                       zorder=3 + j, label=model)
        ax.set_ylim(-3, 108)
        ax.set_xlabel("mean tokens per sample")
        ax.set_ylabel("accuracy (%)")
        n = int(part["n_problems"].max())
        ax.set_title(f"{bench} (n = {n} problems)" + ("" if len(budgets) > 1 else f" · budget {budgets[0]}"),
                     fontsize=10)
    axes[0][-1].legend(title="model", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.suptitle("What accuracy costs: mean tokens per sample against accuracy", fontsize=11)
    return save_figure(fig, path)


def plot_composition(examples: list[dict[str, Any]], path: str | Path) -> plt.Figure:
    """T1's composition cases, named in words (01 wrong → right: switch; 11 right → right: verify;
    10 right → wrong: first kept): left, by the teacher that went first (teacher colours); right,
    by subset (case colours)."""
    if not examples:
        raise ValueError("no T1 examples to plot")
    df = pd.DataFrame({"case": [str(e.get("case")) for e in examples], "first": [str(e.get("first")) for e in examples],
                       "subset": [str(e.get("subset")) for e in examples]})
    order = [c for c in CASE_NAMES if c in set(df["case"])] + sorted(set(df["case"]) - set(CASE_NAMES))
    df["case name"] = df["case"].map(lambda c: CASE_NAMES.get(c, c))
    names = [CASE_NAMES.get(c, c) for c in order]
    firsts = sorted(set(df["first"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    sns.countplot(data=df, x="case name", hue="first", order=names, hue_order=firsts, ax=axes[0],
                  palette={t: TEACHER_COLORS.get(t, "#999") for t in firsts})
    axes[0].set(title=f"T1 examples by case and by the teacher that went first (n = {len(df)})",
                xlabel="case (first teacher → second teacher)", ylabel="T1 examples")
    sns.countplot(data=df, x="subset", hue="case name", hue_order=names, ax=axes[1],
                  palette={CASE_NAMES.get(c, c): CASE_COLORS.get(c, "#999") for c in order})
    axes[1].set(title="T1 examples by subset and case", ylabel="T1 examples")
    for ax, title in zip(axes, ("first teacher", "case"), strict=True):  # legends beside the bars, not on them
        for container in ax.containers:
            ax.bar_label(container, fontsize=8)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title=title)
        ax.title.set_fontsize(10)
    return save_figure(fig, path)


def plot_gbar_hist(gbar: Sequence[float], path: str | Path, *, k: int | None = None) -> plt.Figure:
    """Histogram of ḡ (per-problem share of S1's K samples that are correct), titled with n and K."""
    if not len(gbar):
        raise ValueError("no ḡ values to plot")
    k = k or 10
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.histplot(x=list(gbar), bins=np.linspace(-0.5 / k, 1 + 0.5 / k, k + 2), ax=ax, color=MODEL_COLORS["S1"])
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set_xlabel("ḡ (share of S1's samples that are correct)")
    ax.set_ylabel("problems")
    ax.set_title(f"ḡ per training problem: S1's K = {k} samples, n = {len(gbar)} problems\n"
                 "(ḡ = 1: always solved, never selected for T2)", fontsize=10)
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
