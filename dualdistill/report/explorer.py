"""The β1/β2 explorer of notebook 04: two sliders, the selection drawn from the first render, every
bar explained.

    explorer = BetaExplorer(gbars, beta1=cfg.self_distill.beta1, beta2=cfg.self_distill.beta2, k=cfg.self_distill.k)
    explorer.widget                   # the last value of a cell: sliders, figure, counts, legend

The counts are :func:`dualdistill.algorithm.selection.selection_counts` — the rule stage 04 selects T2 with —
over the cached ḡ values: moving a slider never resamples. Given ``with_solution`` (the problems with a
text-teacher solution, ``self_distillation.with_text_solution(cfg)``), *T2* counts what stage 04 can
build and *no solution* the selected problems it cannot (:func:`explorer_counts`). The sliders' step is fine enough to hold
the params' values exactly (0.01, or 0.001 for a value such as 0.125), so the explorer opens on the
config's β1, β2 and its figure says so.

Each figure below the sliders is a *panel*: a function ``(beta1, beta2) -> matplotlib Figure``,
drawn to PNG whenever a slider moves. :func:`selection_panel` draws the ḡ of every problem against
the two thresholds, and the counts; :func:`sweep_panel`, when ``dualdistill sweep`` has run, what was
*measured* at the swept point nearest the sliders — S2's accuracy and tool use per subset beside
S1's, S2 − S1 with its standard error, T2's size:
``BetaExplorer(..., panels=[selection_panel(gbars, k), sweep_panel(artifacts.sweep_rows(cfg))])``.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dualdistill.algorithm.selection import rules_for, selection_counts

Panel = Callable[[float, float], Figure]

# the bars of the counts, in order: (key of explorer_counts, label, colour, what it counts)
BARS: tuple[tuple[str, str, str, str], ...] = (
    ("solved", "solved", "#9e9e9e",
     "ḡ = 1: S1 was right in all K samples. Nothing left to teach: never selected, whatever β1 and β2."),
    ("eligible", "eligible", "#b0bec5",
     "ḡ < 1: S1 was wrong at least once. Only these problems can be selected (solved + eligible = all)."),
    ("verify", "verify", "#43a047",
     "β1 < ḡ < 1 (strict): a verification example — a correct sample of S1 without its answer, "
     "\"Wait, we can also use text-reasoning…\", a text-teacher solution."),
    ("correct", "correct", "#fb8c00",
     "ḡ < β2 (strict, and ḡ < 1): a correction example — a wrong sample of S1 cut before its answer, "
     "\"Wait, the code is not correct…\", a text-teacher solution."),
    ("both", "both", "#8e24aa",
     "problems where both rules fire: they give one verify and one correct example."),
    ("no_solution", "no solution", "#e53935",
     "selected problems the text teacher never solved in stage 01: stage 04 has no feedback to append, "
     "so it cannot build their examples."),
    ("examples", "T2", "#1565c0",
     "verify + correct examples of the problems with a text-teacher solution: the most stage 04 builds at "
     "these β. It also leaves out an example whose S1 sample has nothing well-formed before its answer, and "
     "a problem short of K samples; its status line says how many."),
)
# the colour of a histogram bar: which rule takes the problems at that ḡ
RULE_COLORS = {"verify": "#43a047", "correct": "#fb8c00", "both": "#8e24aa", "none": "#b0bec5", "solved": "#9e9e9e"}
RULE_LABELS = {"verify": "taken by verify only", "correct": "taken by correct only", "both": "taken by both rules",
               "none": "ḡ < 1, taken by neither", "solved": "ḡ = 1, never taken"}


def slider_step(*values: float) -> float:
    """The coarsest of 0.01 and 0.001 on whose grid every value lies (the params' β1 and β2)."""
    for step in (0.01, 0.001):
        if all(abs(v / step - round(v / step)) < 1e-6 for v in values):
            return step
    return 0.0001


def rule_of(g: float, beta1: float, beta2: float) -> str:
    """Which rule takes a problem of ḡ ``g``: ``solved``, ``verify``, ``correct``, ``both`` or ``none``."""
    if g >= 1:
        return "solved"
    rules = rules_for(g, beta1, beta2)
    return "both" if len(rules) == 2 else (rules[0] if rules else "none")


def explorer_counts(gbars: Mapping[str, float] | Sequence[float], beta1: float, beta2: float,
                    with_solution: Collection[str] | None = None) -> dict[str, int]:
    """:func:`selection_counts` plus ``no_solution`` (selected problems outside ``with_solution``, the
    problems with a text-teacher solution) and ``examples`` counted over the problems stage 04 can
    build (all selected ones when ``with_solution`` is None or ``gbars`` has no problem ids)."""
    counts = dict(selection_counts(gbars, beta1, beta2))
    if with_solution is None or not isinstance(gbars, Mapping):
        return {**counts, "no_solution": 0}
    rules = {pid: rules_for(float(g), beta1, beta2) for pid, g in gbars.items()}
    counts["no_solution"] = sum(bool(r) and pid not in with_solution for pid, r in rules.items())
    counts["examples"] = sum(len(r) for pid, r in rules.items() if pid in with_solution)
    return counts


def selection_panel(gbars: Mapping[str, float] | Sequence[float], k: int | None = None,
                    with_solution: Collection[str] | None = None) -> Panel:
    """The panel of the explorer: left, how many problems have each ḡ, each bar coloured by the rule
    that takes it, the two rules' ranges drawn above as intervals with open ends (strict
    inequalities); right, the counts of :data:`BARS`."""
    by_id = dict(gbars) if isinstance(gbars, Mapping) else dict(enumerate(gbars))
    values = [float(g) for g in by_id.values()]

    def draw(beta1: float, beta2: float) -> Figure:
        counts = explorer_counts(by_id if with_solution is not None else values, beta1, beta2, with_solution)
        fig = Figure(figsize=(12, 4.4), dpi=90)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
        levels = sorted({round(g, 6) for g in values})
        heights = [sum(round(g, 6) == lv for g in values) for lv in levels]
        width = min(0.5 / k, 0.05) if k else 0.03
        rules = [rule_of(lv, beta1, beta2) for lv in levels]
        left.bar(levels, heights, width=width, color=[RULE_COLORS[r] for r in rules], edgecolor="#455a64", lw=0.5)
        for lv, h in zip(levels, heights, strict=True):
            left.annotate(str(h), (lv, h), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=9)
        top = max([*heights, 1])
        for y, lo, hi, closed_lo, color, label in (
                (1.32 * top, beta1, 1.0, False, RULE_COLORS["verify"], f"verify: {beta1:g} < ḡ < 1"),
                (1.12 * top, 0.0, beta2, True, RULE_COLORS["correct"], f"correct: ḡ < {beta2:g}")):
            if hi > lo:
                left.plot([lo, hi], [y, y], color=color, lw=3, solid_capstyle="butt")
                left.plot([lo], [y], marker="o", ms=8, color=color, mfc=color if closed_lo else "white", mew=2)
                left.plot([hi], [y], marker="o", ms=8, color=color, mfc="white", mew=2)
            left.text(max((lo + hi) / 2, 0.12), y + 0.025 * top, label, ha="center", va="bottom", fontsize=10,
                      color=color)
        left.axvline(beta1, color=RULE_COLORS["verify"], lw=1, ls=":")
        left.axvline(beta2, color=RULE_COLORS["correct"], lw=1, ls="--")
        handles = [Patch(color=RULE_COLORS[r], label=RULE_LABELS[r]) for r in RULE_COLORS]
        handles.append(Line2D([], [], marker="o", color="#555", mfc="white", lw=2, label="open end: strict (not taken)"))
        left.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.2), fontsize=9, frameon=False, ncols=3)
        left.set(xlim=(-0.06, 1.06), ylim=(0, 1.5 * top), ylabel="problems")
        left.set_xlabel("ḡ (share of S1's K samples that are correct)", fontsize=10)
        left.set_title(f"{len(values)} problems by ḡ" + (f" (K = {k})" if k else "") + ", coloured by the rule that "
                       "takes them", fontsize=11)
        names = [b[1] for b in BARS]
        bar_heights = [counts[b[0]] for b in BARS]
        bars = right.bar(names, bar_heights, color=[b[2] for b in BARS])
        right.bar_label(bars, padding=2, fontsize=10)
        right.set(ylabel="problems (T2: examples)", ylim=(0, max([*bar_heights, 1]) * 1.2))
        title = f"β1 = {beta1:g}, β2 = {beta2:g}"
        if beta1 > beta2:
            title += ("\nβ1 > β2: not a valid config (stage 04 refuses it):\nproblems with β2 ≤ ḡ ≤ β1 would "
                      "get no example at all;\nset β1 ≤ β2")
        right.set_title(title, fontsize=11 if beta1 <= beta2 else 10, color="black" if beta1 <= beta2 else "#c62828")
        right.tick_params(axis="x", labelsize=10, labelrotation=20)
        fig.tight_layout()
        return fig

    return draw


BETA_FIELDS = ("self_distill.beta1", "self_distill.beta2")


def nearest_point(rows: Sequence[Mapping[str, Any]], beta1: float, beta2: float) -> Mapping[str, Any] | None:
    """The swept point nearest (β1, β2) (Euclidean; a field the sweep kept fixed counts as the params'
    value, i.e. distance 0); None without rows."""
    def dist(row: Mapping[str, Any]) -> float:
        vals = row["values"]
        return sum((float(vals[f]) - v) ** 2 for f, v in zip(BETA_FIELDS, (beta1, beta2), strict=True) if f in vals)

    return min(rows, key=dist) if rows else None


def sweep_panel(rows: Sequence[Mapping[str, Any]]) -> Panel:
    """The panel of a β sweep: at the swept point nearest the sliders, S2's accuracy and tool use per
    subset beside S1's (bars; error bars on S2: the standard error of S2 − S1, paired by problem) and
    the point's T2 in the title. It draws what was measured, not a prediction."""
    rows = list(rows)

    def draw(beta1: float, beta2: float) -> Figure:
        fig = Figure(figsize=(10, 3.4), dpi=90)
        left, right = fig.subplots(1, 2)
        row = nearest_point(rows, beta1, beta2)
        if row is None:
            left.text(0.5, 0.5, "no sweep yet: dualdistill sweep PARAMS --grid ...", ha="center", va="center")
            return fig
        first = row["results"][0]
        res = [r for r in row["results"] if (r["benchmark"], r["budget"]) == (first["benchmark"], first["budget"])]
        names = [r["subset"] for r in res]
        xs = range(len(res))
        for ax, (s1, s2, err, what) in zip((left, right), (("s1_accuracy", "s2_accuracy", "se", "accuracy"),
                                                          ("s1_tool_use", "s2_tool_use", "tool_se", "tool use")),
                                           strict=True):
            ax.bar([x - 0.2 for x in xs], [100 * (r.get(s1) or 0) for r in res], width=0.4, color="#90a4ae", label="S1")
            bars = ax.bar([x + 0.2 for x in xs], [100 * (r.get(s2) or 0) for r in res], width=0.4, color="#1565c0",
                          yerr=[100 * (r.get(err) or 0) for r in res], capsize=3, label="S2")
            ax.bar_label(bars, labels=[f"{100 * (r.get(s2) or 0) - 100 * (r.get(s1) or 0):+.1f}" for r in res],
                         padding=2, fontsize=8)
            ax.set_xticks(list(xs), names, fontsize=9)
            ax.set(ylim=(0, 112), ylabel=f"{what} (%)")
            ax.legend(fontsize=8, frameon=False, loc="upper right")
        vals = ", ".join(f"{k.rsplit('.', 1)[-1]} = {v:g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]} = {v}"
                         for k, v in row["values"].items())
        t2 = row.get("t2") or {}
        left.set_title(f"measured at the nearest swept point: {vals}", fontsize=9)
        right.set_title(f"T2 {t2.get('examples')} examples (verify {t2.get('verify')}, correct {t2.get('correct')})",
                        fontsize=9)
        fig.tight_layout()
        return fig

    return draw


def png(fig: Figure) -> bytes:
    """A figure as PNG bytes (opaque white background)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def legend_html() -> str:
    """What every bar counts, one line each."""
    rows = "".join(
        f"<tr><td style='padding:1px 8px;white-space:nowrap;vertical-align:top'><span style='display:inline-block;width:10px;height:10px;"
        f"background:{color}'></span> <b>{html.escape(label)}</b></td>"
        f"<td style='padding:1px 8px;text-align:left'>{html.escape(text)}</td></tr>"
        for _, label, color, text in BARS)
    return f"<table style='font-size:90%'>{rows}</table>"


def counts_html(counts: Mapping[str, int], beta1: float, beta2: float) -> str:
    """The counts as one line (the browser test reads it): ``β1 = 0 · β2 = 0.9 · solved 3 · ...``."""
    parts = " · ".join(f"{label} <b data-count='{key}'>{counts[key]}</b>" for key, label, _, _ in BARS)
    return f"<div class='dd-counts'>β1 = {beta1:g} · β2 = {beta2:g} · {parts}</div>"


class BetaExplorer:
    """Sliders for β1 and β2 over cached ḡ values; the figure is drawn before the widget is shown."""

    def __init__(self, gbars: Mapping[str, float] | Sequence[float], *, beta1: float, beta2: float,
                 k: int | None = None, panels: Sequence[Panel] | None = None,
                 with_solution: Collection[str] | None = None) -> None:
        import ipywidgets as widgets

        self.gbars = dict(gbars) if isinstance(gbars, Mapping) else [float(g) for g in gbars]
        self.with_solution = None if with_solution is None else set(with_solution)
        self.params = (float(beta1), float(beta2))
        self.panels = list(panels) if panels is not None else [selection_panel(gbars, k, with_solution)]
        step = slider_step(beta1, beta2)
        fmt = f".{max(2, len(f'{step:g}'.split('.')[-1]))}f"
        common = {"min": 0.0, "max": 1.0, "step": step, "readout_format": fmt, "continuous_update": True,
                  "style": {"description_width": "30px"}, "layout": widgets.Layout(width="420px")}
        self.beta1 = widgets.FloatSlider(value=beta1, description="β1", **common)
        self.beta2 = widgets.FloatSlider(value=beta2, description="β2", **common)
        self.reset = widgets.Button(description="params' values", tooltip=f"β1 = {beta1:g}, β2 = {beta2:g}")
        self.images = [widgets.Image(format="png", layout=widgets.Layout(max_width="100%")) for _ in self.panels]
        self.counts = widgets.HTML()
        self.drawn: tuple[float, float] | None = None
        self.redraw()  # before anything is shown: the first render already has the figure
        self.beta1.observe(self._changed, names="value")
        self.beta2.observe(self._changed, names="value")
        self.reset.on_click(lambda _: self.set(*self.params))
        self.widget = widgets.VBox([
            widgets.HBox([self.beta1, self.beta2, self.reset]), *self.images, self.counts,
            widgets.HTML(legend_html()),
        ])

    def thresholds(self) -> tuple[float, float]:
        """The sliders' values, rounded to their step's grid (a slider may hand back 0.9000000001)."""
        digits = len(f"{self.beta1.step:g}".split(".")[-1]) + 1
        return round(self.beta1.value, digits), round(self.beta2.value, digits)

    def set(self, beta1: float, beta2: float) -> None:
        with self.beta1.hold_trait_notifications(), self.beta2.hold_trait_notifications():
            self.beta1.value, self.beta2.value = beta1, beta2
        self.redraw()

    def _changed(self, _change: Any) -> None:
        self.redraw()

    def redraw(self) -> dict[str, int]:
        """Draw every panel and the counts for the sliders' values (a no-op when they did not change)."""
        beta1, beta2 = self.thresholds()
        counts = explorer_counts(self.gbars, beta1, beta2, self.with_solution)
        if self.drawn != (beta1, beta2):
            for image, panel in zip(self.images, self.panels, strict=True):
                image.value = png(panel(beta1, beta2))
            self.counts.value = counts_html(counts, beta1, beta2)
            self.drawn = (beta1, beta2)
        return counts

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Where a person watches (progress mode ``bar``): the widget, with the figure as PNG beside it
        for viewers that do not render widgets. Run headless (``dualdistill run``, papermill), no widget
        — its state is not saved, and a reopened notebook would say "model not found" — only the
        figures at the params' values, so the executed notebook shows them anywhere."""
        import base64

        from dualdistill.common.progress import mode

        figures = {"image/png": base64.b64encode(self.images[0].value).decode()} if self.images else {}
        if mode() != "bar":
            return {**figures, "text/plain": f"<β explorer at β1 = {self.drawn[0]:g}, β2 = {self.drawn[1]:g}>"}
        return {**(self.widget._repr_mimebundle_(**kwargs) or {}), **figures}
