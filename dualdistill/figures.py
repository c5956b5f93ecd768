"""Saving figures: one rule for every PNG the package writes (stage 06, the sweep).

    save_figure(fig, "outputs/demo/plots/accuracy.png")

An unchanged figure leaves its file alone, so a file's time says when the figure last changed (a
rerun of stage 06 touches no plot whose data did not change).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dualdistill.store import write_atomic


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110) -> Any:
    """Save ``fig`` (tight layout) as PNG at ``path``, unless the file already holds these bytes."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_atomic(path, buf.getvalue())
    return fig
