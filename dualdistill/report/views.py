"""HTML views of trajectories for the notebooks: each block highlighted by kind.

    from IPython.display import HTML
    HTML(render_html(trajectory.segments))

Colors: think grey, code blue, executor yellow (red when the run failed), transition purple, notice
orange; the answer green when the trajectory was graded right, red when wrong (neutral when not
known). A code block's execution status is shown in its label. In a training example
(:func:`example_html`) the segments that carry no loss are greyed and labelled "no loss".
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable
from typing import Any

from dualdistill.formats.formatting import Segment
from dualdistill.training.masking import segment_trained

COLORS = {
    "think": "#f2f2f2",
    "code": "#e3efff",
    "executor": "#fff6d6",
    "answer": "#e2f6e2",
    "transition": "#efe3ff",
    "notice": "#ffe8d6",
    "text": "#ffffff",
}
FAILED = "#ffe0e0"
ANSWER = {True: "#d8f3d8", False: "#ffd6d6", None: "#f4f4f4"}  # the answer block by the trajectory's grade


def _segment(seg: Segment | dict[str, Any]) -> Segment:
    return seg if isinstance(seg, Segment) else Segment.from_dict(seg)


def render_html(segments: Iterable[Segment | dict[str, Any]], *, max_chars: int = 1500, title: str | None = None,
                correct: bool | None = None, no_loss: Collection[int] = ()) -> str:
    """One HTML block per segment, colored by kind (the answer by ``correct``: green right, red
    wrong); long texts keep head and tail; the segments at indices ``no_loss`` greyed."""
    parts = []
    if title:
        parts.append(f"<div style='font-weight:bold;margin:6px 0'>{html.escape(title)}</div>")
    for i, raw in enumerate(segments):
        seg = _segment(raw)
        status = seg.meta.get("status")
        color = FAILED if status in ("error", "timeout", "killed") else COLORS.get(seg.kind, "#fff")
        if seg.kind == "answer":
            color = ANSWER[correct]
        label = seg.kind + (f" · {status}" if status else "") + (" · open" if seg.meta.get("open") else "")
        if seg.kind == "answer" and correct is not None:
            label += " · right" if correct else " · wrong"
        grey = ""
        if i in no_loss:
            label += " · no loss"
            grey = "opacity:0.5;filter:grayscale(80%);"
        text = seg.text
        if len(text) > max_chars:
            half = max_chars // 2
            text = f"{text[:half]}\n… ({len(seg.text) - max_chars} characters) …\n{text[-half:]}"
        mono = "font-family:monospace;" if seg.kind in ("code", "executor") else ""
        parts.append(
            f"<div class='dd-seg dd-{seg.kind}' style='background:{color};border-left:4px solid #999;margin:3px 0;"
            f"padding:4px 8px;{grey}'>"
            f"<div style='font-size:75%;color:#555'>{html.escape(label)}</div>"
            f"<div style='white-space:pre-wrap;{mono}'>{html.escape(text)}</div></div>"
        )
    return "<div>" + "".join(parts) + "</div>"


def render_record_html(record: dict[str, Any], **kw: Any) -> str:
    """A teacher rollout record (or sample record) with a one-line header."""
    prob = record.get("problem") or {}
    traj = record.get("trajectory") or {}
    head = (f"{prob.get('id')} · {record.get('role', '')} {record.get('teacher', '')} · "
            f"{'correct' if record.get('correct') else 'wrong'} (gold {prob.get('answer')}) · "
            f"finish {traj.get('finish_reason')} · {traj.get('n_tokens')} tokens · {traj.get('n_code_calls')} calls")
    correct = None if record.get("correct") is None else bool(record["correct"])
    return render_html(traj.get("segments") or [], title=head, correct=correct, **kw)


def no_loss_segments(example: dict[str, Any]) -> set[int]:
    """Indices of a training example's segments that carry no loss (``training.masking``'s rules):
    executor output and notices, failed code, and with ``mask_until_first_transition`` everything
    before the first transition (a correction's attempt, T1's first wrong teacher)."""
    segs = [_segment(s) for s in example.get("segments") or []]
    first = next((i for i, s in enumerate(segs) if s.kind == "transition"), len(segs))
    cut = first if example.get("mask_until_first_transition") else 0
    return {i for i in range(len(segs)) if i < cut or not segment_trained(segs, i)}


def example_html(example: dict[str, Any], *, title: str | None = None, **kw: Any) -> str:
    """A training example (T1, T2) with the segments that carry no loss greyed."""
    return render_html(example.get("segments") or [], title=title, no_loss=no_loss_segments(example), **kw)


FRACTION_RE = re.compile(r"accuracy|_rate|tool_use|gbar_mean|mean_gbar|disagreement|share")


def _shown(name: str, value: Any) -> Any:
    """A fraction (a float in [0, 1] under a name such as accuracy, *_rate, tool_use) as ``39.4 %``."""
    if isinstance(value, float) and not isinstance(value, bool) and 0 <= value <= 1 and FRACTION_RE.search(name):
        return f"{100 * value:.1f} %"
    return value


def key_figures(metrics: dict[str, Any], keys: list[str] | None = None) -> Any:
    """A stage's ``metrics.json`` (or part of it: ``keys``) as one table column; nested values are
    flattened to ``outer / inner`` rows, fractions (accuracy, rates, tool use, mean ḡ) shown in % with
    one decimal."""
    import pandas as pd

    data = {k: metrics[k] for k in keys if k in metrics} if keys else metrics
    flat = pd.json_normalize(data, sep=" / ")
    if flat.empty:
        return pd.DataFrame(columns=["value"])
    # object dtype: a count stays 24, not 24.0 beside a float in the same column
    table = flat.astype(object).T.rename(columns={0: "value"})
    table["value"] = [_shown(str(name), v) for name, v in table["value"].items()]
    return table
