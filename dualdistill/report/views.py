"""HTML views of trajectories for the notebooks: each block highlighted by kind.

    from IPython.display import HTML
    HTML(render_html(trajectory.segments))

Colors: think grey, code blue, executor yellow (red when the run failed), answer green,
transition purple, notice orange. A code block's execution status is shown in its label.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from dualdistill.formats.formatting import Segment

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


def _segment(seg: Segment | dict[str, Any]) -> Segment:
    return seg if isinstance(seg, Segment) else Segment.from_dict(seg)


def render_html(segments: Iterable[Segment | dict[str, Any]], *, max_chars: int = 1500, title: str | None = None) -> str:
    """One HTML block per segment, colored by kind; long texts keep head and tail."""
    parts = []
    if title:
        parts.append(f"<div style='font-weight:bold;margin:6px 0'>{html.escape(title)}</div>")
    for raw in segments:
        seg = _segment(raw)
        status = seg.meta.get("status")
        color = FAILED if status in ("error", "timeout", "killed") else COLORS.get(seg.kind, "#fff")
        label = seg.kind + (f" · {status}" if status else "") + (" · open" if seg.meta.get("open") else "")
        text = seg.text
        if len(text) > max_chars:
            half = max_chars // 2
            text = f"{text[:half]}\n… ({len(seg.text) - max_chars} characters) …\n{text[-half:]}"
        mono = "font-family:monospace;" if seg.kind in ("code", "executor") else ""
        parts.append(
            f"<div style='background:{color};border-left:4px solid #999;margin:3px 0;padding:4px 8px;'>"
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
    return render_html(traj.get("segments") or [], title=head, **kw)


def key_figures(metrics: dict[str, Any], keys: list[str] | None = None) -> Any:
    """A stage's ``metrics.json`` (or part of it: ``keys``) as one table column; nested values are
    flattened to ``outer / inner`` rows."""
    import pandas as pd

    data = {k: metrics[k] for k in keys if k in metrics} if keys else metrics
    flat = pd.json_normalize(data, sep=" / ")
    # object dtype: a count stays 24, not 24.0 beside a float in the same column
    return flat.astype(object).T.rename(columns={0: "value"}) if not flat.empty else pd.DataFrame(columns=["value"])
