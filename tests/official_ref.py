"""The official DualDistill code as an oracle for tests: load its modules and run its scripts.

The reference lives at ``SHARED/reference/DualDistill`` (see its SOURCE.md); a missing reference is
an error, never a skip. Modules are loaded under private names with only what cannot run here
replaced by stand-ins (``vllm``, the OpenAI client, ``AutoTokenizer``, ``datasets.load_dataset``),
inserted in ``sys.modules`` while the module loads and removed afterwards. Everything else runs
as written: the official functions and strings themselves, never a re-implementation.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import runpy
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from tests.conftest import OFFICIAL_REFERENCE as REFERENCE

BOS_ID, EOS_ID = 0x110000, 0x110001  # ids past the last code point: one id per character otherwise
BOS_TEXT, EOS_TEXT = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def reference_dir() -> Path:
    if not (REFERENCE / "math_utils" / "utils.py").is_file():
        raise FileNotFoundError(f"the official DualDistill code is missing at {REFERENCE}; "
                                "set DUALDISTILL_SHARED to the shared directory that holds reference/DualDistill")
    return REFERENCE


class CharTokenizer:
    """A tokenizer with one id per character that adds BOS like the official student tokenizer."""

    eos_token_id = EOS_ID

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([BOS_ID] if add_special_tokens else []) + [ord(c) for c in text]

    def decode(self, ids: int | list[int], skip_special_tokens: bool = False) -> str:
        specials = {BOS_ID: BOS_TEXT, EOS_ID: EOS_TEXT}
        out = []
        for i in [ids] if isinstance(ids, int) else list(ids):
            i = int(i)
            if i in specials:
                out.append("" if skip_special_tokens else specials[i])
            else:
                out.append(chr(i))
        return "".join(out)


class _AutoTokenizer:
    @staticmethod
    def from_pretrained(*_: Any, **__: Any) -> CharTokenizer:
        return CharTokenizer()


class ScriptedServer:
    """Stands in for the vLLM server behind the official sampler: each client (one per official
    ``server_inference`` call) takes the next scripted generation for the problem in its first
    prompt and returns its pieces one call after another (streamed one character per chunk)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[str, deque[list[str]]] = {}
        self.prompts: list[str] = []

    def load(self, scripts: dict[str, list[list[str]]]) -> None:
        with self.lock:
            self.scripts = {p: deque(s) for p, s in scripts.items()}
            self.prompts = []

    def take(self, prompt: str) -> list[str]:
        with self.lock:
            self.prompts.append(prompt)
            for problem, queue in self.scripts.items():
                if f"<｜User｜>{problem}\n\n" in prompt:
                    queue.rotate(-1)
                    return list(queue[-1])
        raise AssertionError(f"no script for prompt {prompt[-200:]!r}")


SERVER = ScriptedServer()


class _OpenAI:
    def __init__(self, **_: Any) -> None:
        self.pieces: list[str] | None = None
        self.completions = SimpleNamespace(create=self._create)

    def _create(self, *, prompt: str, max_tokens: int, **_: Any) -> Iterator[Any]:
        if self.pieces is None:
            self.pieces = SERVER.take(prompt)
        text = self.pieces.pop(0)[:max_tokens] if self.pieces else ""
        return iter([SimpleNamespace(choices=[SimpleNamespace(text=c)]) for c in text])


def _stub(name: str, **attrs: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attrs)
    return module


STUBS = {
    "vllm": _stub("vllm", LLM=object, SamplingParams=lambda **kw: SimpleNamespace(**kw)),
    "openai": _stub("openai", OpenAI=_OpenAI),
    "transformers": _stub("transformers", AutoTokenizer=_AutoTokenizer),
    "datasets": _stub("datasets", load_dataset=None),  # set per run (run_extract_training_solution)
}


@contextmanager
def official_imports(*stubbed: str) -> Iterator[None]:
    """The reference on ``sys.path`` and the named stand-ins in ``sys.modules``, for the duration;
    the reference's own packages (``math_utils``, ``sft``) are dropped again afterwards."""
    saved_path, before = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(reference_dir()))
    sys.modules.update({name: STUBS[name] for name in stubbed})
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in list(sys.modules):
            if name.split(".")[0] in ("math_utils", "sft", *stubbed) and name not in before:
                del sys.modules[name]
        for name in stubbed:
            if name in before:
                sys.modules[name] = before[name]


@functools.cache
def load(relpath: str, *stubbed: str) -> ModuleType:
    """The official module at ``relpath`` (e.g. ``math_utils/utils.py``), loaded once."""
    path = reference_dir() / relpath
    name = "official_oracle_" + relpath.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    with official_imports(*stubbed):
        spec.loader.exec_module(module)
    return module


def utils() -> ModuleType:
    return load("math_utils/utils.py")


def dataloader() -> ModuleType:
    return load("sft/dataloader.py", "transformers")


def evaluate() -> ModuleType:
    return load("sft/evaluate.py", "vllm", "openai", "transformers")


def sampler() -> ModuleType:
    return load("sft/self_distillation_sampler.py", "vllm", "openai", "transformers")


def run_script(relpath: str, cwd: Path, *stubbed: str) -> None:
    """Run an official top-level script as written, in ``cwd``."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with official_imports(*stubbed):
            runpy.run_path(str(reference_dir() / relpath), run_name="__official_script__")
    finally:
        os.chdir(old)


def run_extract_training_solution(cwd: Path, deepmath_rows: list[dict[str, Any]]) -> None:
    """``script/data_script/extract_training_solution.py`` with DeepMath-103K replaced by rows."""
    STUBS["datasets"].load_dataset = lambda *_, **__: {"train": deepmath_rows}
    run_script("script/data_script/extract_training_solution.py", cwd, "datasets")
