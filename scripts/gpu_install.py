"""The one GPU install line, and a check that what it resolves uses ONE CUDA major (no GPU needed).

    python scripts/gpu_install.py            # resolve the line for manylinux x86_64 / Python 3.11, print majors
    python scripts/gpu_install.py --line     # print the install line (README and docs/GPU.md carry it)

Why a check: torch 2.13.0 from PyPI is a CUDA 13 build (Requires-Dist ``cuda-toolkit[...]==13.0.3``,
``nvidia-*-cu13``) and vLLM 0.32.0 asks for ``nvidia-cutlass-dsl[cu13]`` and ``humming-kernels[cu13]``.
Installing torch from the ``whl/cu128`` index next to it mixes CUDA 12 and 13 libraries, which only fails
when vLLM's compiled extension loads. The line below takes everything from PyPI, so torch, vLLM and the
kernels agree on CUDA 13 (NVIDIA driver R580 or newer, >= 580.65.06 by NVIDIA's table for CUDA 13.0).

:func:`resolve` asks pip for the resolved set without installing or downloading wheels
(``pip install --dry-run --report``, metadata only); :func:`cuda_majors` reads the CUDA major every
package states: a ``+cuNNN`` local version (torch from the PyTorch index), a ``-cuNN`` name
(``nvidia-cudnn-cu13``), the version of the toolkit packages themselves (``cuda-toolkit``,
``nvidia-cuda-runtime``, ``cuda-bindings``), and ``[cuNN]`` extras in the requirements of resolved
packages (``nvidia-cutlass-dsl[cu13]``). tests/test_gpu_install.py runs both.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
INDEX_URL = "https://pypi.org/simple"
EXTRAS = "gpu,dev"
# the exact line (README, docs/GPU.md and `make setup-gpu` carry it; tests check that they do)
INSTALL_ARGS = f'--index-url {INDEX_URL} -e ".[{EXTRAS}]"'
INSTALL_LINE = f"python -m pip install {INSTALL_ARGS}"
CUDA_MAJOR = 13
DRIVER = "NVIDIA driver R580 or newer (>= 580.65.06, NVIDIA's minimum for CUDA 13.0 on Linux x86_64)"
# pip takes only the platform tags it is given: every manylinux glibc level up to 2.31 (vLLM 0.32's
# llguidance needs manylinux_2_31, i.e. Ubuntu 20.04 / Debian 11 or newer)
GLIBC_MAX = 31
PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(17, GLIBC_MAX + 1)] + ["manylinux2014_x86_64"]
TARGET_ENV = {"python_version": "3.11", "python_full_version": "3.11.9", "platform_system": "Linux",
              "sys_platform": "linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
# packages named for CUDA 12 that a CUDA 13 set may hold because a resolved package requires them with no
# marker: package -> the package whose metadata requires it (checked in the report, not assumed)
REQUIRED_BY = {"nvidia-cutlass-dsl-libs-cu12": "nvidia-cutlass-dsl"}
# packages whose own version is the CUDA version (library packages such as nvidia-cufft 12.x are not)
_TOOLKIT = re.compile(r"^(cuda-toolkit|cuda-bindings|cuda-python|nvidia-cuda-(runtime|nvrtc|nvcc|crt|cupti|cccl|nvvm))$")
_NAME_CU = re.compile(r"-cu(\d{2,3})(?=$|-)")
_LOCAL_CU = re.compile(r"\+cu(\d{3})")
_EXTRA_CU = re.compile(r"\[[^\]]*\bcu(\d{2,3})\b[^\]]*\]")


def _major(digits: str) -> int:
    """``13`` → 13, ``128`` → 12, ``130`` → 13."""
    return int(digits) if len(digits) == 2 else int(digits[:-1])


def pip_command(python: str, report: Path, target: Path, spec: str = f".[{EXTRAS}]") -> list[str]:
    """The metadata-only resolution of the install line: the same index, manylinux x86_64, Python 3.11.
    ``--isolated`` ignores this machine's pip config (its local CPU torch would shadow the index)."""
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    return [python, "-m", "pip", "install", "--isolated", "--index-url", INDEX_URL, "--dry-run", "--ignore-installed",
            "--report", str(report), *platforms, "--python-version", "3.11", "--only-binary=:all:",
            "--target", str(target), "-q", spec]


def resolve(python: str = sys.executable, spec: str = f".[{EXTRAS}]", cwd: Path = REPO) -> tuple[dict, float]:
    """pip's install report for ``spec`` (no download of wheels, no install) and the seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        t0 = time.monotonic()
        run = subprocess.run(pip_command(python, report, Path(tmp) / "target", spec), capture_output=True,
                             text=True, cwd=cwd, timeout=900)
        seconds = time.monotonic() - t0
        if run.returncode != 0:
            raise RuntimeError(f"pip could not resolve {spec}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
        return json.loads(report.read_text()), seconds


def _applies(req: Any) -> bool:
    return req.marker is None or req.marker.evaluate(TARGET_ENV)


def cuda_majors(report: dict) -> dict[int, list[str]]:
    """CUDA major → the evidence for it (``name version: why``) in a pip install report."""
    from packaging.requirements import Requirement

    items = [(i["metadata"]["name"].lower(), i["metadata"]["version"], i["metadata"].get("requires_dist") or [])
             for i in report["install"]]
    unconditional = {name: {Requirement(r).name.lower() for r in reqs if _applies(Requirement(r))}
                     for name, _, reqs in items}
    found: dict[int, list[str]] = {}

    def add(major: int, why: str) -> None:
        found.setdefault(major, []).append(why)

    for name, version, reqs in items:
        local = _LOCAL_CU.search(version)
        if local:
            add(_major(local.group(1)), f"{name} {version}: local version +cu{local.group(1)}")
        named = _NAME_CU.search(name)
        if named and name in REQUIRED_BY and name in unconditional.get(REQUIRED_BY[name], set()):
            pass  # required with no marker by its parent package (REQUIRED_BY), not a choice of the install line
        elif named:
            add(_major(named.group(1)), f"{name} {version}: name")
        elif _TOOLKIT.match(name):
            add(int(version.split(".")[0]), f"{name} {version}: toolkit version")
        for raw in reqs:
            req = Requirement(raw)
            extra = _EXTRA_CU.search(raw.split(";")[0])
            if extra and _applies(req):
                add(_major(extra.group(1)), f"{name} {version}: requires {raw.split(';')[0].strip()}")
    return found


def check(report: dict) -> dict[int, list[str]]:
    """:func:`cuda_majors`, raising ``ValueError`` (with the evidence) when it finds more than one major."""
    majors = cuda_majors(report)
    if len(majors) > 1:
        lines = [f"  CUDA {m}: " + "; ".join(ev[:6]) + (" ..." if len(ev) > 6 else "") for m, ev in sorted(majors.items())]
        raise ValueError("the resolved set mixes CUDA majors:\n" + "\n".join(lines))
    return majors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line", action="store_true", help="print the install line and exit")
    ap.add_argument("--spec", default=f".[{EXTRAS}]", help="what to resolve (default: the project with its extras)")
    a = ap.parse_args(argv)
    if a.line:
        print(INSTALL_LINE)
        return 0
    report, seconds = resolve(spec=a.spec)
    names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    print(f"resolved {len(names)} packages in {seconds:.0f} s: torch {names.get('torch')}, vllm {names.get('vllm')}, "
          f"bitsandbytes {names.get('bitsandbytes')}, transformers {names.get('transformers')}")
    try:
        majors = check(report)
    except ValueError as err:
        print(err)
        return 1
    for major, evidence in sorted(majors.items()):
        print(f"CUDA {major} only ({len(evidence)} packages say so), e.g. " + "; ".join(evidence[:4]))
    print(f"needs: {DRIVER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
