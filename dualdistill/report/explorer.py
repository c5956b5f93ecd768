"""The β1/β2 explorer of notebook 04: two sliders, the selection drawn from the first render, every
bar explained.

    explorer = BetaExplorer(gbars, beta1=cfg.self_distill.beta1, beta2=cfg.self_distill.beta2, k=cfg.self_distill.k)
    explorer.widget                   # the last value of a cell: sliders, figure, counts, legend

The counts are :func:`dualdistill.algorithm.selection.selection_counts` — the rule stage 04 selects T2 with —
over the cached ḡ values: moving a slider never resamples. The sliders' step is fine enough to hold
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from dualdistill.algorithm.selection import selection_counts

Panel = Callable[[float, float], Figure]

# the bars of the counts, in order: (key of selection_counts, label, colour, what it counts)
BARS: tuple[tuple[str, str, str, str], ...] = (
    ("solved", "solved", "#9e9e9e",
     "ḡ = 1: S1 was right in all K samples. Nothing left to teach: never selected, whatever β1 and β2."),
    ("eligible", "eligible", "#90caf9",
     "ḡ < 1: S1 was wrong at least once. Only these problems can be selected (solved + eligible = all)."),
    ("verify", "verify", "#66bb6a",
     "β1 < ḡ < 1: a verification example — a correct sample of S1 without its answer, "
     "\"Wait, we can also use text-reasoning…\", a text-teacher solution."),
    ("correct", "correct", "#ffa726",
     "ḡ < β2 (and ḡ < 1): a correction example — a wrong sample of S1 cut before its answer, "
     "\"Wait, the code is not correct…\", a text-teacher solution."),
    ("both", "both", "#ab47bc",
     "problems where both rules fire: they give one verify and one correct example."),
    ("examples", "T2 ≤", "#1565c0",
     "verify + correct: T2's size when every selected problem has a text-teacher solution and a usable "
     "sample of S1; stage 04 builds at most this many and lists what it had to leave out."),
)


def slider_step(*values: float) -> float:
    """The coarsest of 0.01 and 0.001 on whose grid every value lies (the params' β1 and β2)."""
    for step in (0.01, 0.001):
        if all(abs(v / step - round(v / step)) < 1e-6 for v in values):
            return step
    return 0.0001


def selection_panel(gbars: Mapping[str, float] | Sequence[float], k: int | None = None) -> Panel:
    """The panel of the explorer: left, how many problems have each ḡ, with the two rules' ranges
    shaded (verify: β1 < ḡ < 1; correct: ḡ < β2); right, the counts of :data:`BARS`."""
    values = [float(g) for g in (gbars.values() if isinstance(gbars, Mapping) else gbars)]

    def draw(beta1: float, beta2: float) -> Figure:
        counts = selection_counts(values, beta1, beta2)
        fig = Figure(figsize=(10, 3.4), dpi=90)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        levels = sorted({round(g, 6) for g in values})
        width = min(0.5 / k, 0.05) if k else 0.03
        left.axvspan(beta1, 1, color="#66bb6a", alpha=0.15, lw=0, label="verify: β1 < ḡ < 1")
        left.axvspan(0, beta2, color="#ffa726", alpha=0.15, lw=0, label="correct: ḡ < β2")
        left.bar(levels, [sum(round(g, 6) == lv for g in values) for lv in levels], width=width,
                 color=["#9e9e9e" if lv >= 1 else "#90caf9" for lv in levels])
        left.axvline(beta1, color="#2e7d32", lw=1.5)
        left.axvline(beta2, color="#ef6c00", lw=1.5, ls="--")
        left.set(xlim=(-0.05, 1.05), xlabel="ḡ (share of S1's K samples that are correct)", ylabel="problems",
                 title=f"{len(values)} problems by ḡ" + (f" (K = {k})" if k else ""))
        left.legend(loc="upper center", fontsize=8, frameon=False, ncols=2)
        left.margins(y=0.25)
        names = [b[1] for b in BARS]
        heights = [counts[b[0]] for b in BARS]
        bars = right.bar(names, heights, color=[b[2] for b in BARS])
        right.bar_label(bars, padding=2)
        right.set(ylabel="problems (T2 ≤: examples)", ylim=(0, max([*heights, 1]) * 1.2),
                  title=f"β1 = {beta1:g}, β2 = {beta2:g}" + ("  (β1 > β2: not a valid config)" if beta1 > beta2 else ""))
        right.tick_params(axis="x", labelsize=9)
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
                 k: int | None = None, panels: Sequence[Panel] | None = None) -> None:
        import ipywidgets as widgets

        self.values = [float(g) for g in (gbars.values() if isinstance(gbars, Mapping) else gbars)]
        self.params = (float(beta1), float(beta2))
        self.panels = list(panels) if panels is not None else [selection_panel(self.values, k)]
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
        counts = selection_counts(self.values, beta1, beta2)
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
