"""The notebooks as files and their shared first cell: committed output-free with the project's kernel,
one parameters cell read from DUALDISTILL_PARAMS, ``notebook.start`` (working directory, one-line
errors), a missing earlier stage said in one line before anything is written, ``make lab``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dualdistill.config import ConfigError
from dualdistill.pipeline import notebook
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNELSPEC = {"display_name": "DualDistill (.venv)", "language": "python", "name": "dualdistill"}


def test_six_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


def committed(path: Path) -> str:
    """The notebook as committed (HEAD): the working copy may hold outputs Lab saved, which the
    nbstripout filter keeps out of git; outside a git checkout, the file itself."""
    done = subprocess.run(["git", "show", f"HEAD:{path.relative_to(REPO).as_posix()}"], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_is_committed_clean_with_the_projects_kernel(path):
    text = committed(path)
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == KERNELSPEC
    assert nb.metadata["language_info"]["name"] == "python"  # as the kernel reports it: Lab finds nothing to change
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    # what the nbstripout filter would commit is what is committed (so `git status` stays clean after a save)
    stripped = subprocess.run([sys.executable, "-m", "nbstripout", "-t"], input=text, text=True,
                              capture_output=True, check=True).stdout
    assert stripped == text, f"{path.name}: run `.venv/bin/python -m nbstripout {path}` (or `make setup` for the filter)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_parameters_cell_then_start(path):
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert 'params = os.environ.get("DUALDISTILL_PARAMS", "params/demo.yaml")' in code[0].source
    assert "import dualdistill as dd" in code[1].source and "cfg = dd.start(params, overrides)" in code[1].source
    assert not any("os.chdir" in c.source or "load_config(" in c.source for c in code)


def test_output_stripping_filter_is_declared_and_installed_by_setup():
    assert "*.ipynb filter=nbstripout" in (REPO / ".gitattributes").read_text().splitlines()
    makefile = (REPO / "Makefile").read_text()
    assert "-m nbstripout --install" in makefile


def test_make_lab_opens_the_repository_root_and_allows_root():
    # under `make test` the parent make's MAKELEVEL/MAKEFLAGS would add "Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "lab",
                           "PARAMS=params/smoke.yaml"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    command = done.stdout.strip().splitlines()[-1]
    assert command.startswith("DUALDISTILL_PARAMS=params/smoke.yaml ") and " lab " in command
    assert f'--ServerApp.root_dir="{REPO}"' in command
    assert ("--allow-root" in command) == (os.getuid() == 0)


# --- notebook.start -----------------------------------------------------------------------------------
def test_find_root_from_notebooks_and_executed_copies(tmp_path):
    root = tmp_path / "repo"
    for d in ("params", "notebooks", "outputs/demo/notebooks"):
        (root / d).mkdir(parents=True)
    assert notebook.find_root(root / "notebooks") == root
    assert notebook.find_root(root / "outputs" / "demo" / "notebooks") == root
    assert notebook.find_root(tmp_path) is None


def test_start_moves_to_the_root_and_names_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO / "notebooks")
    cfg = notebook.start("params/smoke.yaml", {"output_dir": str(tmp_path)})
    assert Path.cwd() == REPO and cfg.run_name == "smoke"
    assert capsys.readouterr().out.strip() == (f"run 'smoke' · params {REPO / 'params' / 'smoke.yaml'} · "
                                               f"outputs {tmp_path / 'smoke'}")
    monkeypatch.chdir(tmp_path)  # no repository above: the error names the folder
    with pytest.raises(ConfigError, match=r"params file not found: params/nope.yaml \(relative to the current "
                                          rf"directory {tmp_path}"):
        notebook.start("params/nope.yaml")


def test_one_line_errors_in_ipython(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert notebook.install_error_display(shell)
        result = shell.run_cell("from dualdistill.artifacts.paths import missing\nfrom pathlib import Path\n"
                                "raise missing('03', Path('outputs/x/models/S1'), 'model S1')")
    finally:
        InteractiveShell.clear_instance()
    assert not result.success  # the cell still fails: Run All and papermill stop there
    shown = capsys.readouterr().out.strip().splitlines()
    assert len(shown) == 1 and "MissingStageError" in shown[0] and "stage 03" in shown[0]
    assert "has not run for this params file (expected model S1 at outputs/x/models/S1)" in shown[0]


def test_settings_table_flattens_nested_sections():
    from dualdistill.config import load_config

    table = notebook.settings_table(load_config(REPO / "params" / "smoke.yaml").eval, "eval")
    assert table.loc["budgets / S", "eval"] == 512 and table.loc["models", "eval"].startswith("S0, ")


def test_notebook_04_without_stage_03_says_so_in_one_line_and_writes_nothing(tmp_path):
    """A user who forgot a step: notebook 04 on a params file whose run has no S1 stops at its first
    stage cell with one line naming stage 03 and the path it expected; nothing is written."""
    import papermill

    from dualdistill.pipeline.papermill_runner import execute_notebook

    out = tmp_path / "outputs"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute_notebook(REPO / "notebooks" / "04_self_distillation.ipynb", tmp_path / "04.ipynb",
                         {"params": "params/smoke.yaml", "overrides": {"output_dir": str(out)}}, progress=False)
    assert err.value.ename == "MissingStageError"
    assert err.value.evalue.startswith("stage 03 (") and "has not run for this params file (expected model S1" in err.value.evalue
    errors = [o for c in json.loads((tmp_path / "04.ipynb").read_text())["cells"] for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line, not a traceback
    assert not out.exists()  # nothing written before the check
