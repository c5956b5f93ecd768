"""The notebooks as a user meets them: JupyterLab started here on 127.0.0.1, driven in Debian's headless
Chromium by Playwright, on the session's smoke outputs (``smoke_run``, conftest.py).

Notebook 01 reruns on the finished outputs without a red box, says what it reused and drew, and
colours a wrong answer red; notebook 04 opens with the project's kernel and unchanged, runs all
without an error box, its β explorer draws its figure from the first render (opaque pixels with
ink, not a transparent image) at the params' β2 = 0.9 and counts what stage 04 can build, moving the
β2 slider changes the counts and the figure, and its showcased correction is an attempt graded
wrong shown without loss; notebook 03 reruns on the finished outputs, reuses every model and says so
in its first column; notebook 06 runs all, opens on the accuracy figure (one panel per subset with
error bars, the paired panel) and shows its six figures, and ends on what the run showed. Every
notebook ends with its closing sentences and a "For tests" heading. Screenshots go to ``tmp_path``,
or to ``$DUALDISTILL_SCREENSHOTS`` (``docs/img`` for the README's).

``DUALDISTILL_LAB_PARAMS=params/demo.yaml`` runs the same checks on a finished run of those params
under ``outputs/`` (after ``make demo``; ``make lab-shots`` does both and retakes ``docs/img``) instead
of the smoke run.

Chromium is installed by ``.ci/run`` (``apt-get install chromium``); without it this test fails.
"""

from __future__ import annotations

import base64
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from matplotlib.container import BarContainer

from dualdistill.algorithm.selection import gbar_by_problem, group_by_problem
from dualdistill.artifacts.current import eval_paired, eval_rows, self_distill_samples
from dualdistill.artifacts.paths import RunPaths
from dualdistill.report.explorer import explorer_counts
from dualdistill.report.figures import accuracy_panels, plot_accuracy
from dualdistill.stages.self_distillation import with_text_solution
from tests import lab_driver as lab
from tests.conftest import REPO

NB01 = "notebooks/01_teacher_rollouts.ipynb"
NB03 = "notebooks/03_teacher_distillation_sft.ipynb"
NB04 = "notebooks/04_self_distillation.ipynb"
NB06 = "notebooks/06_analysis.ipynb"
FIGURES_06 = 6  # accuracy, tool use, tokens vs accuracy, composition, ḡ histogram, selection sweep
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def _requirements() -> None:
    """Fail (not skip) with what to install when the browser, Playwright or the kernel is missing."""
    if not (Path(lab.CHROMIUM).exists() or shutil.which(lab.CHROMIUM)):
        pytest.fail(f"chromium not found at {lab.CHROMIUM}: `.ci/run` installs it (apt-get install -y chromium); "
                    "set DUALDISTILL_CHROMIUM to use another binary")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the Python package playwright is missing: `make setup` installs the [dev] extras")
    spec = lab.kernel_spec()
    if not spec.is_file():
        pytest.fail(f"the project's Jupyter kernel {lab.KERNEL!r} is not registered in this environment ({spec}): "
                    "`make setup` registers it (ipykernel install --sys-prefix --name dualdistill)")
    argv0 = json.loads(spec.read_text())["argv"][0]
    if Path(os.path.abspath(argv0)).parent != Path(os.path.abspath(sys.executable)).parent:  # the same venv
        pytest.fail(f"{spec} starts {argv0}, not this environment's {sys.executable}: rerun `make setup`")


def _code_cells(path: str) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads((REPO / path).read_text())["cells"])


def _committed_language_version() -> str | None:
    return json.loads((REPO / NB04).read_text())["metadata"].get("language_info", {}).get("version")


@pytest.fixture
def lab_run(request) -> tuple[Any, str]:
    """(config, params path) of the run the notebooks open on: the session's smoke run, or the finished
    run of ``$DUALDISTILL_LAB_PARAMS`` under the repository's ``outputs/``."""
    params = os.environ.get("DUALDISTILL_LAB_PARAMS")
    if not params:
        return request.getfixturevalue("smoke_run")[0], "params/smoke.yaml"
    from dualdistill.config import load_config

    cfg = load_config(REPO / params, {"output_dir": str(REPO / "outputs")})
    summary = RunPaths.of(cfg).summary
    if not summary.is_file():
        pytest.fail(f"DUALDISTILL_LAB_PARAMS={params}: no finished run ({summary} is missing): run "
                    f"`dualdistill run {params}` first")
    return cfg, params


@pytest.mark.slow
def test_notebooks_04_and_06_in_jupyterlab(lab_run, tmp_path):
    _requirements()
    cfg, params = lab_run
    shots = Path(os.environ.get("DUALDISTILL_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    root = lab.lab_root(tmp_path / "root", REPO, Path(cfg.output_dir), [Path(params).name])
    # what `make lab PARAMS=…` sets; progress as a person sees it (bars, not runner lines)
    env = {"DUALDISTILL_PARAMS": params, "DUALDISTILL_PROGRESS": None}
    gbars = gbar_by_problem(group_by_problem(self_distill_samples(cfg)))
    with_solution = with_text_solution(cfg)
    at_params = explorer_counts(gbars, cfg.self_distill.beta1, cfg.self_distill.beta2, with_solution)
    at_zero = explorer_counts(gbars, cfg.self_distill.beta1, 0.0, with_solution)
    assert at_params["no_solution"] > 0 or len(with_solution) == len(gbars)  # the count says what cannot be built
    # the first figure of 06 tells the result: one panel per subset, every bar with its standard error,
    # and the paired panel with S2 − S1 first
    rows = eval_rows(cfg)
    subsets = ["all", *sorted({r["subset"] for r in rows if r["subset"] != "all" and not r["subset"].startswith("family:")})]
    first = [p for p in accuracy_panels(rows) if (p["benchmark"], p["budget"]) == (rows[0]["benchmark"], rows[0]["budget"])]
    assert [p["subset"] for p in first] == subsets and len(subsets) > 1
    assert all(len(p["se"]) == len(p["models"]) and not any(math.isnan(e) for e in p["se"]) for p in first)
    fig = plot_accuracy(rows, tmp_path / "accuracy.png", paired=eval_paired(cfg))
    bar_axes = fig.axes[:len(subsets)]
    bars = [next(c for c in ax.containers if isinstance(c, BarContainer)) for ax in bar_axes]
    assert all(b.errorbar is not None and len(b) == len(p["models"]) for b, p in zip(bars, first, strict=True))
    assert fig.axes[len(subsets)].get_yticklabels()[0].get_text() == "S2 − S1"
    assert cfg.self_distill.beta2 == 0.9 and at_params["correct"] > 0, "the run should have corrections at β2 = 0.9"
    timings = {}
    with lab.jupyter_lab(root, tmp_path, env=env) as (url, token), lab.chromium(tmp_path) as browser:
        # --- 01 on finished outputs: no red box, what was reused said as information, answers by grade
        page = lab.open_notebook(browser, url, token, NB01)
        lab.run_all(page)
        assert lab.errors_shown(page) == []  # the world's notices are information, not stderr
        text = page.locator(PANEL).inner_text()
        assert "reused from" in text and "drawn now" in text and "For tests" in text and "Next:" in text
        wrong = page.locator(f"{PANEL} .dd-answer", has_text="answer · wrong")
        if wrong.count():  # the shown wrong agent attempt: its answer is red, not green
            assert wrong.first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 214, 214)"
        page.close(run_before_unload=False)

        # --- 04: the project's kernel, unchanged on opening, run all
        t0 = time.monotonic()
        page = lab.open_notebook(browser, url, token, NB04)
        timings["open 04"] = time.monotonic() - t0
        assert lab.kernel_name(page) == "DualDistill (.venv)"
        if _committed_language_version() == platform.python_version():
            assert not lab.tab_is_dirty(page), "notebook 04 is marked changed right after opening"
        t0 = time.monotonic()
        prompts = lab.run_all(page)
        timings["run all 04"] = time.monotonic() - t0
        assert len(prompts) == _code_cells(NB04)  # every cell ran (a number in each prompt)
        assert lab.errors_shown(page) == []  # no red box: no error, no stderr noise (bitsandbytes, progress)
        text = page.locator(PANEL).inner_text()
        assert "reused" in text and "S2 already trained" in text  # what was reused is said (smoke outputs exist)
        assert "have no text-teacher solution" in text and "For tests" in text and "Next:" in text
        showcase = page.locator(f"{PANEL} .jp-OutputArea-output", has_text="rule correct ·").first
        assert "graded wrong" in showcase.inner_text()  # the correction shown: S1's attempt really failed
        assert showcase.locator(".dd-seg", has_text="no loss").count() > 0  # its attempt carries no loss, greyed
        showcase.screenshot(path=str(shots / "lab_showcase.png"))

        # --- the β explorer: drawn from the first render, at the params' values
        image = page.locator(f"{PANEL} .widget-image").first
        first = lab.image_stats(image)
        assert first["width"] > 300 and first["opaque"] == first["pixels"], first  # no transparent image
        assert first["ink"] > 0.02 * first["pixels"], first  # something is drawn on it
        counts = page.locator(f"{PANEL} .dd-counts").first
        before = counts.inner_text()
        assert before == lab.counts_line(0.0, 0.9, at_params), before
        readout = page.locator(f"{PANEL} .widget-slider", has=page.locator(".widget-label:text-is('β2')"))
        assert readout.locator(".widget-readout").inner_text().strip() == "0.90"  # not snapped to a coarse step
        explorer = image.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
        explorer.screenshot(path=str(shots / "lab_explorer.png"))

        # --- move β2 to 0: no problem has ḡ < 0, so no correction; the counts and the figure change
        t0 = time.monotonic()
        lab.set_slider(page, "β2", 0)
        page.wait_for_function("(c) => document.querySelector('.dd-counts').innerText !== c", arg=before)
        timings["slider"] = time.monotonic() - t0
        after = counts.inner_text()
        assert after == lab.counts_line(0.0, 0.0, at_zero) and after != before, after
        assert lab.image_stats(image)["src"] != first["src"]
        page.close(run_before_unload=False)

        # --- 03 on finished outputs: every model reused, and said so first; no red box
        t0 = time.monotonic()
        page = lab.open_notebook(browser, url, token, NB03)
        lab.run_all(page)
        timings["03"] = time.monotonic() - t0
        assert lab.errors_shown(page) == []  # e.g. no bitsandbytes "Failed to load CPU gemm_4bit_forward"
        table = page.locator(f"{PANEL} .jp-OutputArea-output table", has=page.locator("th:text-is('status')")).first
        status = table.locator("tbody tr td:first-of-type")
        assert set(status.all_inner_texts()) == {"reused: trained earlier, same data and settings"}
        page.close(run_before_unload=False)

        # --- 06: every figure renders inline
        t0 = time.monotonic()
        page = lab.open_notebook(browser, url, token, NB06)
        assert lab.kernel_name(page) == "DualDistill (.venv)"
        lab.run_all(page)
        timings["06"] = time.monotonic() - t0
        assert lab.errors_shown(page) == []
        figures = page.locator(f"{PANEL} .jp-OutputArea-output img")
        assert figures.count() == FIGURES_06
        accuracy_png = (RunPaths.of(cfg).plots / "accuracy.png").read_bytes()
        first_src = figures.first.get_attribute("src")
        assert first_src.endswith(base64.b64encode(accuracy_png).decode()[-64:])  # the result comes first
        text = page.locator(PANEL).inner_text()
        assert "S2 − S1 =" in text and "paired standard error" in text and "For tests" in text
        page.set_viewport_size({"width": 2000, "height": 900})  # the first figure at a readable size
        figures.first.evaluate("e => e.scrollIntoView({block: 'center'})")
        figures.first.screenshot(path=str(shots / "lab_result.png"))
        for i in range(FIGURES_06):
            stats = lab.image_stats(figures.nth(i))
            assert stats["width"] > 200 and stats["ink"] > 0.005 * stats["pixels"], (i, stats)
        page.set_viewport_size({"width": 1200, "height": 900})
        figures.nth(FIGURES_06 - 1).evaluate("e => e.scrollIntoView({block: 'end'})")  # ḡ histogram and the sweep
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / "lab_analysis.png"))
        page.close(run_before_unload=False)
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
