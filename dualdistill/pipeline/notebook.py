"""What the notebooks share: the first cell after the parameters, and the small views they all use.

    params = os.environ.get("DUALDISTILL_PARAMS", "params/demo.yaml")   # the parameters cell
    overrides = {}

    from dualdistill import notebook
    cfg = notebook.start(params, overrides)

:func:`start` makes the repository root the working directory (Jupyter starts a kernel in the
notebook's folder; papermill in the root), so the relative paths of params files and outputs mean
the same everywhere; it shows a user's mistake — a stage that has not run yet, a params file that
is not there — as one line that says what to do, not as a traceback; it lets tables show long
values in full; and it says which run the notebook works on. ``make lab PARAMS=params/X.yaml``
sets ``DUALDISTILL_PARAMS`` for every kernel of that JupyterLab, so the parameters cell needs no
edit; ``dualdistill run`` (papermill) injects its own values after the parameters cell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dualdistill.artifacts.paths import MissingStageError, RunPaths
from dualdistill.config import ConfigError, RunConfig, load_config

PARAMS_ENV = "DUALDISTILL_PARAMS"  # set by `make lab PARAMS=...` for the kernels it starts
ONE_LINE_ERRORS = (MissingStageError, ConfigError)  # a user's next step, said in one line


def find_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) that holds both
    ``params/`` and ``notebooks/``: the repository root (also from ``outputs/<run>/notebooks``)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return None


def one_line_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython's custom exception handler for :data:`ONE_LINE_ERRORS`: the error as one red line.
    The cell still fails (papermill and "Run All" stop there); only the traceback is left out."""
    line = f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"
    shell._showtraceback(etype, value, [line])  # what IPython shows for a cell's error
    return [line]


def install_error_display(shell: Any | None = None) -> bool:
    """Show :data:`ONE_LINE_ERRORS` as one line in this IPython kernel; False outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with ipykernel
            return False
        shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc(ONE_LINE_ERRORS, one_line_error)
    return True


def start(params: str | Path, overrides: Mapping[str, Any] | None = None, *, quiet: bool = False) -> RunConfig:
    """The notebooks' setup: the repository root as working directory, one-line errors, tables that
    show long values in full, then the run's config (``load_config``) and one line naming it."""
    root = find_root()
    if root is not None and root != Path.cwd().resolve():
        os.chdir(root)
    install_error_display()
    import pandas as pd

    pd.set_option("display.max_colwidth", 400)  # warnings and paths in key-figure tables are not cut
    pd.set_option("display.max_columns", 40)
    cfg = load_config(params, dict(overrides or {}))
    if not quiet:
        from_env = os.environ.get(PARAMS_ENV) == str(params)
        print(f"run {cfg.run_name!r} · params {cfg.source}" + (f" (from {PARAMS_ENV})" if from_env else "")
              + f" · outputs {RunPaths.of(cfg).root.resolve()}")
    return cfg


def settings_table(section: Any, name: str = "value") -> Any:
    """A config section (a pydantic model or a dict) as a one-column table, nested fields flattened
    to ``outer / inner`` rows: the settings a stage runs with, readable at a glance."""
    import pandas as pd

    data = section.model_dump(mode="json") if hasattr(section, "model_dump") else dict(section)
    flat = pd.json_normalize(data, sep=" / ", max_level=1)
    if flat.empty:
        return pd.DataFrame(columns=[name])
    table = flat.T.rename(columns={0: name})
    table[name] = [_short(v) for v in table[name]]
    return table


def _short(value: Any) -> Any:
    if isinstance(value, dict | list):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else ", ".join(map(str, value))
    return value


def notes_html(lines: list[str], *, kind: str = "warning") -> str:
    """Lines shown in full in a coloured box (warnings of a stage, what was reused)."""
    import html

    if not lines:
        return ""
    color = {"warning": "#fff4e0", "info": "#eef5ff"}.get(kind, "#f4f4f4")
    mark = {"warning": "⚠ ", "info": ""}.get(kind, "")
    items = "".join(f"<li>{mark}{html.escape(str(line))}</li>" for line in lines)
    return (f"<ul style='background:{color};padding:6px 6px 6px 24px;margin:4px 0;border-radius:4px'>"
            f"{items}</ul>")
