"""Stage 06 — analysis: results tables and seaborn figures of a run (METHOD §1, §4).

    python -m dualdistill.analysis params/smoke.yaml
    dualdistill analyze params/smoke.yaml                  # the same call: run(cfg)

:func:`run` reads what earlier stages wrote under ``outputs/<run>/`` — it writes nothing of theirs —
and writes ``plots/*.png`` and ``report/results.md``:

- accuracy by model x benchmark (one panel per budget), tool-use rate by benchmark and by family,
  tokens vs accuracy — from stage 05's summary rows (``report/summary.json``);
- two results tables: the strict score (the project's grader) and the official-comparable score
  (the official ``compute_score``'s verdict) with the paper's rows beside it — the paper's numbers
  come from that rule — and the rate at which the two verdicts disagree;
- the composition case distribution of T1 (stage 02's examples: ``case``, ``first``, ``subset``);
- the ḡ histogram of self-distillation and a β1/β2 sweep of how many T2 examples each setting
  selects, from stage 04's current samples (``artifacts.self_distill_samples``) with the rule of
  ``dualdistill.selection`` — the same ḡ values stage 04 used;
- the paired differences of stage 05 (S2 − S1, S1 − each other model, per subset, with the standard
  error of the per-problem differences), printed and in the report;
- when ``dualdistill sweep`` has run: S2's measured accuracy and tool use per subset against the
  swept fields, beside T2's size (``sweep.plot_sweep``, ``plots/sweep.png``), and the sweep's table.

A missing input (no self-distillation samples yet, ...) skips its figure with a printed note.
Each ``plot_*`` function takes data, saves a PNG and returns the matplotlib Figure.
"""

from __future__ import annotations

import json
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

from dualdistill.artifacts import (  # noqa: E402
    MissingStageError,
    RunPaths,
    eval_paired,
    eval_rows,
    self_distill_samples,
    sweep_rows,
)
from dualdistill.config import RunConfig  # noqa: E402
from dualdistill.entry import stage  # noqa: E402
from dualdistill.figures import save_figure  # noqa: E402
from dualdistill.metrics import FAMILY_PREFIX  # noqa: E402
from dualdistill.selection import (  # noqa: E402
    gbar_by_problem,
    gbar_histogram,
    group_by_problem,
    selection_counts,
    selection_sweep,
)
from dualdistill.store import read_json, read_jsonl, write_atomic  # noqa: E402
from dualdistill.sweep import plot_sweep, sweep_table  # noqa: E402
from dualdistill.tables import (  # noqa: E402
    disagreement_table,
    frame_markdown,
    paired_table_markdown,
    paper_table_markdown,
    results_table,
    summary_frame,
    table_markdown,
)

BETA_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # β values of the sweep


# --- figures -------------------------------------------------------------------------------------
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


# --- stage -------------------------------------------------------------------------------------------
def load_eval_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """Stage 05's summary rows; [] when stage 05 has not run."""
    try:
        return eval_rows(cfg)
    except MissingStageError:
        return []


def load_gbar(cfg: RunConfig) -> dict[str, float]:
    """ḡ per problem of stage 04's current samples (this config, K and problem set); {} without any."""
    if not RunPaths.of(cfg).sd_samples.is_file():
        return {}
    return gbar_by_problem(group_by_problem(self_distill_samples(cfg)))


def load_t2_report(cfg: RunConfig) -> dict[str, Any] | None:
    """Stage 04's selection report (``t2/selection.json``) when it was made at the config's β1, β2."""
    path = RunPaths.of(cfg).t2_selection
    if not path.is_file():
        return None
    report = read_json(path)
    sd = cfg.self_distill
    return report if (report.get("beta1"), report.get("beta2")) == (sd.beta1, sd.beta2) else None


@stage("06")
def run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stage 06: all figures + ``report/results.md``; returns their paths, skipped figures and key metrics."""
    paths = RunPaths.of(cfg)
    plots: dict[str, str] = {}
    skipped: dict[str, str] = {}
    metrics: dict[str, Any] = {}

    def make(name: str, missing: str | None, fn, *args, **kw) -> None:
        if missing:
            print(f"[analysis] skipping {name}: {missing}")
            skipped[name] = missing
            return
        fig = fn(*args, paths.plots / f"{name}.png", **kw)
        plt.close(fig)
        plots[name] = str(paths.plots / f"{name}.png")

    rows = load_eval_rows(cfg)
    no_eval = None if rows else f"no evaluation summary at {paths.summary} (run stage 05)"
    make("accuracy", no_eval, plot_accuracy, rows)
    make("tool_use", no_eval, plot_tool_use, rows)
    make("tokens_vs_accuracy", no_eval, plot_tokens_vs_accuracy, rows)
    table = results_table(rows) if rows else pd.DataFrame()
    official_table = results_table(rows, score="official") if rows else pd.DataFrame()
    disagreement = disagreement_table(rows) if rows else pd.DataFrame()
    for r in rows:
        if r["subset"] == "all":
            key = f"{r['model']}/{r['benchmark']}/{r['budget']}"
            metrics.setdefault("accuracy", {})[key] = r["accuracy"]
            metrics.setdefault("official_accuracy", {})[key] = r.get("official_accuracy")
            metrics.setdefault("score_disagreement", {})[key] = r.get("score_disagreement")
            metrics.setdefault("tool_use_rate", {})[key] = r["tool_use_rate"]

    paired = eval_paired(cfg) if rows else []
    for r in paired:
        if r["metric"] == "accuracy" and r["delta"] is not None:
            key = f"{r['model']}-{r['against']}/{r['benchmark']}/{r['budget']}/{r['subset']}"
            metrics.setdefault("paired", {})[key] = {"delta": r["delta"], "se": r["se"], "n_problems": r["n_problems"]}
            if r["subset"] == "all":
                print(f"[analysis] {r['model']} − {r['against']} ({r['benchmark']}, {r['budget']}): "
                      f"{100 * r['delta']:+.1f} ± {100 * r['se']:.1f} points (standard error of the per-problem "
                      f"differences, {r['n_problems']} problems)")
    swept = sweep_rows(cfg)
    if swept:  # optional: a sweep is not a stage, so none is not a skipped figure
        make("sweep", None, plot_sweep, swept)

    examples = read_jsonl(paths.t1) if paths.t1.is_file() else []
    make("composition", None if examples else f"no T1 examples at {paths.t1} (run stage 02)",
         plot_composition, examples)
    if examples:
        metrics["t1_cases"] = dict(pd.Series([str(e.get("case")) for e in examples]).value_counts().sort_index())
        metrics["t1_cases"] = {k: int(v) for k, v in metrics["t1_cases"].items()}

    gbar = load_gbar(cfg)
    k = cfg.self_distill.k
    no_sd = None if gbar else f"no self-distillation samples of S1 at {paths.sd_samples} (run stage 04)"
    make("gbar_hist", no_sd, plot_gbar_hist, list(gbar.values()), k=k)
    b1, b2 = cfg.self_distill.beta1, cfg.self_distill.beta2
    make("selection_sweep", no_sd, plot_selection_sweep, list(gbar.values()), current=(b1, b2),
         built=load_t2_report(cfg))
    if gbar:
        metrics["selection"] = selection_counts(gbar.values(), b1, b2)
        metrics["mean_gbar"] = float(np.mean(list(gbar.values())))
        metrics["gbar_hist"] = gbar_histogram(gbar.values())

    md = ["# Results", "", f"Run `{cfg.run_name}` (config hash `{cfg.hash()}`).", "",
          "## Accuracy (%), strict score — budgets " + "/".join(cfg.eval.budgets), "",
          "The project's grader: the final answer of the answer part, compared by value.", "", table_markdown(table),
          "## Accuracy (%), official-comparable score — budgets " + "/".join(cfg.eval.budgets), "",
          "The verdict of the official `compute_score` (a substring of the first answer block counts, so `2` is "
          "found in `\\boxed{12}`): the score the paper's numbers were computed with, so the rows prefixed "
          "`paper:` are compared with this table, not with the strict one. Their avg is over the benchmarks "
          "shown only (the paper's own avg, over five benchmarks, is further down).", "",
          table_markdown(official_table),
          "## Strict vs official-comparable (%)", "",
          "`disagreement`: the share of samples whose two verdicts differ.", "",
          frame_markdown(disagreement),
          "", "## Paired differences (points, ± standard error)", "",
          "Model minus the model it is compared with, on the problems both answered: per problem the mean over its "
          "samples, then the mean of the per-problem differences; ± is the standard error of that mean (sample "
          "standard deviation of the differences / √n, problems as the sampling unit).", "",
          paired_table_markdown(paired), "", paired_table_markdown(paired, "tool_use_rate"),
          "", "## Paper (arXiv 2507.05707, 5 samples, S/L; official compute_score)", "", paper_table_markdown(),
          "## Figures", ""]
    md += [f"![{n}](../plots/{Path(p).name})" for n, p in plots.items()]
    md += [f"- {n}: skipped ({why})" for n, why in skipped.items()]
    if swept:
        md += ["", "## Sweep (S2 per point; S1 and its samples reused)", "", sweep_table(swept)]
    if "selection" in metrics:
        md += ["", f"## Self-distillation selection (β1={b1}, β2={b2})", "", json.dumps(metrics["selection"])]
    results_md = write_atomic(paths.report / "results.md", "\n".join(md) + "\n")
    return {"plots": plots, "skipped": skipped, "results_md": str(results_md), "table": table_markdown(table),
            "official_table": table_markdown(official_table), "paired_table": paired_table_markdown(paired),
            "paired_tool_table": paired_table_markdown(paired, "tool_use_rate"),
            "sweep_table": sweep_table(swept) if swept else None, "metrics": metrics}


def show_figure(result: dict[str, Any], name: str) -> Any:
    """For notebooks: the saved PNG of figure ``name`` of a :func:`run` result, or a note
    saying why it was skipped."""
    from IPython.display import Image, Markdown

    if name in result["plots"]:
        return Image(filename=result["plots"][name])
    return Markdown(f"_{name}: skipped — {result['skipped'].get(name, 'not made')}_")


if __name__ == "__main__":
    from dualdistill.entry import main

    raise SystemExit(main("06"))
