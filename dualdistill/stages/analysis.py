"""Stage 06 — analysis: results tables and seaborn figures of a run (METHOD §1, §4).

    python -m dualdistill.stages.analysis params/smoke.yaml
    dualdistill analyze params/smoke.yaml                  # the same call: run(cfg)

:func:`run` reads what earlier stages wrote under ``outputs/<run>/`` — it writes nothing of theirs —
and writes ``plots/*.png`` and ``report/results.md``:

- accuracy per model on each subset (%, ± the standard error over problems) beside the paired
  differences S2 − S1 and S1 − each baseline (± SE), tool use per subset and family, tokens vs
  accuracy — from stage 05's summary rows and paired rows (``report/summary.json``);
- two results tables: the strict score (the project's grader) and the official-comparable score
  (the official ``compute_score``'s verdict) with the paper's rows beside it — the paper's numbers
  come from that rule — and the rate at which the two verdicts disagree;
- the composition case distribution of T1 (stage 02's examples: ``case``, ``first``, ``subset``);
- the ḡ histogram of self-distillation and a β1/β2 sweep of how many T2 examples each setting
  selects, from stage 04's current samples (``artifacts.self_distill_samples``) with the rule of
  ``dualdistill.algorithm.selection`` — the same ḡ values stage 04 used;
- the paired differences of stage 05 (S2 − S1, S1 − each other model, per subset, with the standard
  error of the per-problem differences), printed and in the report;
- when ``dualdistill sweep`` has run: S2's measured accuracy and tool use per subset against the
  swept fields, beside T2's size (``report.figures.plot_sweep``, ``plots/sweep.png``), and the sweep's table.

A missing input (no self-distillation samples yet, ...) skips its figure with a printed note.
Each ``plot_*`` function takes data, saves a PNG and an SVG and returns the matplotlib Figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # headless outside notebooks
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dualdistill.algorithm.selection import (  # noqa: E402
    gbar_by_problem,
    gbar_histogram,
    group_by_problem,
    selection_counts,
)
from dualdistill.artifacts.current import eval_paired, eval_rows, self_distill_samples, sweep_rows
from dualdistill.artifacts.paths import MissingStageError, RunPaths
from dualdistill.common.store import read_json, read_jsonl, write_atomic  # noqa: E402
from dualdistill.config import RunConfig  # noqa: E402
from dualdistill.report.figures import (  # noqa: E402
    plot_accuracy,
    plot_composition,
    plot_gbar_hist,
    plot_selection_sweep,
    plot_sweep,
    plot_tokens_vs_accuracy,
    plot_tool_use,
)
from dualdistill.report.tables import (  # noqa: E402
    disagreement_table,
    frame_markdown,
    paired_table_markdown,
    paper_table_markdown,
    results_table,
    sweep_table,
    table_markdown,
)
from dualdistill.stages.entry import stage  # noqa: E402

# --- figures -------------------------------------------------------------------------------------














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
    paired = eval_paired(cfg) if rows else []
    make("accuracy", no_eval, plot_accuracy, rows, paired=paired)
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
    from dualdistill.stages.entry import main

    raise SystemExit(main("06"))
