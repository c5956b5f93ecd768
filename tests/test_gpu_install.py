"""The GPU install line resolves to one CUDA major, and the places that show it carry the same line.

``scripts/gpu_install.py`` holds the line. The resolution test asks PyPI for the set the line installs on
manylinux x86_64 / Python 3.11 (pip's metadata-only ``--dry-run --report``; 46-158 s here, no GPU and no
wheel downloads) and fails when it mixes CUDA majors. The classifier is also checked on reports built by
hand: torch from the cu128 index next to vLLM's ``[cu13]`` kernels must be caught."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_install", REPO / "scripts" / "gpu_install.py")
gpu_install = importlib.util.module_from_spec(_spec)
sys.modules["gpu_install"] = gpu_install
_spec.loader.exec_module(gpu_install)


def item(name: str, version: str, *requires: str) -> dict:
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)}}


VLLM = item("vllm", "0.32.0", "torch==2.13.0", "nvidia-cutlass-dsl[cu13]==4.8.0", "humming-kernels[cu13]==0.1.17")
CUTLASS = item("nvidia-cutlass-dsl", "4.8.0", "nvidia-cutlass-dsl-libs-base==4.8.0", "nvidia-cutlass-dsl-libs-cu12==4.8.0",
               'nvidia-cutlass-dsl-libs-cu13==4.8.0; extra == "cu13"')
CU13_SET = [item("torch", "2.13.0", 'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"',
                 'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"'),
            item("cuda-toolkit", "13.0.3.0"), item("nvidia-cudnn-cu13", "9.20.0.48"), item("nvidia-cufft", "12.0.0.61"),
            VLLM, CUTLASS, item("nvidia-cutlass-dsl-libs-cu12", "4.8.0"), item("nvidia-cutlass-dsl-libs-cu13", "4.8.0"),
            item("humming-kernels", "0.1.17", 'nvidia-cuda-runtime-cu12; extra == "cu12"', 'nvidia-cuda-runtime; extra == "cu13"'),
            item("nvidia-cuda-runtime", "13.0.96")]


def test_a_cuda13_set_is_one_major() -> None:
    # nvidia-cufft 12.x is cuFFT's own version in CUDA 13; libs-cu12 is required with no marker by cutlass-dsl
    assert set(gpu_install.check({"install": CU13_SET})) == {13}


def test_torch_from_the_cu128_index_next_to_vllm_is_caught() -> None:
    cu128 = [item("torch", "2.13.0+cu128", 'nvidia-cudnn-cu12==9.10.2.21; platform_system == "Linux"'),
             item("nvidia-cudnn-cu12", "9.10.2.21"), *CU13_SET[4:]]
    with pytest.raises(ValueError, match=r"(?s)CUDA 12: torch 2\.13\.0\+cu128.*CUDA 13: .*nvidia-cutlass-dsl\[cu13\]"):
        gpu_install.check({"install": cu128})


def test_a_cu12_package_is_allowed_only_where_its_parent_requires_it() -> None:
    without_parent = [i for i in CU13_SET if i["metadata"]["name"] != "nvidia-cutlass-dsl"]
    assert set(gpu_install.cuda_majors({"install": without_parent})) == {12, 13}
    cu12_kernels = [*CU13_SET, item("flashinfer-python", "0.7.0", 'nvidia-cutlass-dsl>=4.7; extra == "cu12"',
                                    "humming-kernels[cu12]")]
    assert set(gpu_install.cuda_majors({"install": cu12_kernels})) == {12, 13}


def test_the_gpu_extra_pins_the_vllm_the_line_was_checked_with() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["vllm==0.32.0"]
    assert not any(r.startswith("deepspeed") for r in extras["gpu"])  # an sdist: it has no wheel metadata to check


def test_makefile_and_gpu_docs_carry_the_line() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"setup-gpu:.*\n(\t.*\n)*\t\$\(PY\) -m pip install " + re.escape(gpu_install.INSTALL_ARGS), makefile)
    assert gpu_install.INSTALL_LINE in (REPO / "docs" / "GPU.md").read_text()


def test_readme_carries_the_line() -> None:
    readme = (REPO / "README.md").read_text()
    assert gpu_install.INSTALL_LINE in readme, f"README.md should give the GPU install line: {gpu_install.INSTALL_LINE}"
    assert "whl/cu128" not in readme, "README.md still installs torch from the cu128 index (CUDA 12 next to vLLM's 13)"


@pytest.mark.slow  # 46 s on a quiet machine, 158 s with the CPU shared (measured): over the 2-minute line
@pytest.mark.network
def test_the_install_line_resolves_to_one_cuda_major() -> None:
    report, seconds = gpu_install.resolve(sys.executable)
    names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert names["vllm"] == "0.32.0" and names["torch"] == "2.13.0", names
    majors = gpu_install.check(report)
    assert set(majors) == {gpu_install.CUDA_MAJOR}, majors
    print(f"\nresolved {len(names)} packages in {seconds:.0f} s; CUDA {gpu_install.CUDA_MAJOR} only")
