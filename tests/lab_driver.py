"""JupyterLab in headless Chromium, as a user meets the notebooks: start Lab on 127.0.0.1 over a
folder that looks like the repository (notebooks/, params/, outputs/), open a notebook with the
project's kernel, run all cells, read what the page shows. Used by tests/test_lab_browser.py.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``), driven by Playwright's
Python package; Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("DUALDISTILL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
KERNEL = "dualdistill"  # the project's kernel (Makefile: ipykernel install --sys-prefix --name dualdistill)


def kernel_spec() -> Path:
    """Where ``make setup`` registers the project's kernel: inside this interpreter's prefix (.venv)."""
    return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
# Lab's own settings for the test: no news or update checks (no network here); every cell rendered (no
# windowing), so the page's text holds the whole notebook, not only the cells in view
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False},
                "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_root(folder: Path, repo: Path, outputs: Path, params: list[str]) -> Path:
    """A folder laid out as the repository for Lab: copies of the notebooks and the named params
    files, and ``outputs`` a link to an existing output directory."""
    shutil.copytree(repo / "notebooks", folder / "notebooks")
    (folder / "params").mkdir(parents=True)
    for name in params:
        shutil.copy(repo / "params" / name, folder / "params" / name)
    (folder / "outputs").symlink_to(outputs, target_is_directory=True)
    return folder


@contextmanager
def jupyter_lab(root: Path, work: Path, env: dict[str, str | None] | None = None, timeout: float = 90):
    """Start ``python -m jupyterlab`` on 127.0.0.1 over ``root`` (``env``: variables to set, None to
    remove); yields (base url, token); stops it."""
    port, token = free_port(), secrets.token_hex(16)
    settings = work / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    # the user's own Jupyter folders are left out (a kernel of the same name registered with --user would
    # win over the venv's); kernels and Lab itself come from this interpreter's prefix
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config"), "JUPYTER_DATA_DIR": str(work / "data"),
                "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
                "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces")}
    full_env.pop("JUPYTER_PATH", None)
    for key, value in (env or {}).items():  # None removes a variable
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    log = (work / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         "--allow-root"],
        cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({proc.returncode}): {(work / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer in {timeout} s: {(work / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def chromium(work: Path):
    """Debian's headless Chromium under Playwright (every launch gets a new empty profile:
    Playwright refuses ``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


# --- reading and driving a notebook in Lab ---------------------------------------------------------
PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
    .map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '')"""


def open_notebook(browser: Any, url: str, token: str, path: str, timeout: float = 120,
                  viewport: tuple[int, int] = (1400, 1000)) -> Any:
    """A new page with ``path`` (relative to Lab's root) open in a fresh workspace; returns the
    page once the notebook's kernel is connected and idle."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(f"{url}/lab/tree/{path}?reset&token={token}")
    name = path.rsplit("/", 1)[-1]
    page.wait_for_selector(f".lm-TabBar-tab.jp-mod-current:has-text('{name}')", timeout=timeout * 1000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=timeout * 1000)
    wait_kernel_idle(page, timeout)
    return page


def status_bar(page: Any) -> str:
    return page.locator("#jp-main-statusbar").inner_text()


def kernel_name(page: Any) -> str:
    """The kernel's display name, as the notebook's toolbar shows it."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName").first.inner_text().strip()


def wait_kernel_idle(page: Any, timeout: float = 120) -> None:
    """Until the status bar says ``<kernel> | Idle`` (a kernel is connected and not busy)."""
    page.wait_for_function(
        """() => { const s = document.querySelector('#jp-main-statusbar');
                   const t = s ? s.innerText : '';
                   return /\\| Idle/.test(t) && !/No Kernel/.test(t); }""", timeout=timeout * 1000)


def tab_is_dirty(page: Any) -> bool:
    return page.evaluate("() => !!document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')")


def run_all(page: Any, timeout: float = 300) -> list[str]:
    """Run > Run All Cells, then wait until every code cell has run (a number in its prompt, no
    ``*``); returns the prompts."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").first.click()
    page.wait_for_function(
        f"""() => {{ const p = ({PROMPTS_JS})();
                    return p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t)); }}""", timeout=timeout * 1000)
    wait_kernel_idle(page, timeout)
    return page.evaluate(PROMPTS_JS)


def errors_shown(page: Any) -> list[str]:
    """The text of every error output of the open notebook."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent)""")


IMAGE_STATS_JS = """(img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let opaque = 0, ink = 0;
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0) opaque++;
        if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200)) ink++;
    }
    return {width: c.width, height: c.height, pixels: d.length / 4, opaque, ink, src: img.src.slice(0, 64)};
}"""


def image_stats(locator: Any) -> dict[str, Any]:
    """Size, non-transparent pixels and "ink" (not near-white) pixels of a rendered <img>."""
    locator.wait_for(state="visible")
    locator.evaluate("img => img.decode ? img.decode() : null")
    return locator.evaluate(IMAGE_STATS_JS)


def set_slider(page: Any, description: str, value: float) -> None:
    """Type ``value`` into the readout of the slider labelled ``description`` (as a user can:
    click the number, type, Enter)."""
    slider = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider", has=page.locator(
        f".widget-label:text-is('{description}')")).first
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(f"{value}")
    page.keyboard.press("Enter")


def counts_line(beta1: float, beta2: float, counts: dict[str, int]) -> str:
    """The explorer's counts line as the page shows it (``dualdistill.report.explorer.counts_html``)."""
    import re

    from dualdistill.report.explorer import counts_html

    return re.sub(r"<[^>]+>", "", counts_html(counts, beta1, beta2))
