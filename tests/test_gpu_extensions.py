"""scripts/gpu_extensions.py's logic without a GPU: the CUDA major vLLM's wheel asks for is read from its
requirements, and a torch built for another major stops the check with a message naming both."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_extensions", REPO / "scripts" / "gpu_extensions.py")
ext = importlib.util.module_from_spec(_spec)
sys.modules["gpu_extensions"] = ext
_spec.loader.exec_module(ext)

VLLM_032 = ["torch==2.13.0", "nvidia-cutlass-dsl[cu13]==4.8.0", "humming-kernels[cu13]==0.1.17",
            'pytest; extra == "test"']


def test_vllms_cuda_major_comes_from_its_requirements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ext.md, "requires", lambda dist: VLLM_032 if dist == "vllm" else None)
    assert ext.vllm_cuda_major() == 13
    monkeypatch.setattr(ext.md, "requires", lambda dist: [*VLLM_032, "humming-kernels[cu12]"])
    with pytest.raises(ext.ExtensionError, match="several CUDA majors"):
        ext.vllm_cuda_major()


def test_a_cu128_torch_next_to_vllms_cu13_kernels_stops_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(ext, "vllm_cuda_major", lambda: 13)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(ext.ExtensionError, match="CUDA 13 kernels, torch is a CUDA 12 build"):
        ext.check_majors("cuda")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert ext.check_majors("cuda") == {"vllm_cuda_major": 13, "torch_cuda_major": 13}


def test_a_failing_step_is_named_and_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(device: str) -> None:
        raise ImportError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(ext, "check_torch", lambda device: {"torch": "x"})
    monkeypatch.setattr(ext, "check_majors", lambda device: {})
    monkeypatch.setattr(ext, "check_vllm", broken)
    with pytest.raises(ext.ExtensionError, match="vllm extensions: ImportError: libcudart.so.12"):
        ext.run("cuda", tmp_path)
    written = (tmp_path / "results" / "extensions.json").read_text()
    assert '"torch"' in written and "libcudart.so.12" in written
