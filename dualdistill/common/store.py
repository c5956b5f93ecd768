"""Files that survive crashes: append-only JSONL record stores and atomic whole-file writes.

Each record is one line, written with a single ``write`` and flushed (fsync optional). A line
without its trailing newline is a torn write from a crash: it is never read as data, and the next
append cuts it off. A complete line that is not valid JSON is an error naming file and line.
Records carry a ``key``; a rerun asks :meth:`JsonlStore.keys` and does only what is missing.
Whole files (summaries, configs, training sets) are written to a temporary file and renamed over
the target (:func:`write_atomic`), so a reader never sees half a file; whole directories (a built
model or tokenizer) are built beside their target and moved into place (:func:`build_directory`),
with a meta file whose ``hash`` says what made them (:func:`current_build`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class CorruptRecordError(ValueError):
    """A complete JSONL line that is not a JSON object."""


class JsonlStore:
    """Crash-safe JSONL file of dict records with a ``key`` field."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._repaired = False

    def _repair_tail(self) -> None:
        """Cut a torn final line (no trailing newline) left by a crash."""
        if self._repaired or not self.path.exists():
            self._repaired = True
            return
        with open(self.path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                self._repaired = True
                return
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                cut = data.rfind(b"\n") + 1
                log.warning("%s: dropping a torn last line (%d bytes) from an interrupted run", self.path, size - cut)
                f.truncate(cut)
        self._repaired = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())

    def read(self) -> list[dict[str, Any]]:
        """All complete records, in order. A torn last line is ignored."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    break  # torn write
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as err:
                    raise CorruptRecordError(f"{self.path}:{lineno}: not valid JSON ({err.msg})") from None
                if not isinstance(rec, dict):
                    raise CorruptRecordError(f"{self.path}:{lineno}: expected a JSON object")
                out.append(rec)
        return out

    def keys(self) -> set[str]:
        return {r["key"] for r in self.read() if "key" in r}

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record per key (a retried failure is superseded by its success)."""
        return {r["key"]: r for r in self.read() if "key" in r}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())


def record_key(*parts: Any) -> str:
    """Key of a record, e.g. ``record_key(problem_id, role, sample, config_hash)``."""
    return "|".join(str(p) for p in parts)


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` through a temporary file and a rename
    (never a half-written file). An unchanged file is left alone, so its modification time says when
    its content last changed."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    if path.is_file() and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_json(path: str | Path, value: Any) -> Path:
    """A JSON file (indented, unicode kept; values JSON cannot encode are written with ``str``)."""
    return write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; an invalid one is an error naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptRecordError(f"{path}: not valid JSON ({err.msg}); fix or delete it") from None


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write a whole JSONL file atomically."""
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return JsonlStore(path).read()


# --- built directories ------------------------------------------------------------------------------
def read_build_meta(out_dir: str | Path, meta_file: str) -> dict[str, Any] | None:
    """The meta file of a built directory, or None (absent or unreadable: not a finished build)."""
    try:
        return json.loads((Path(out_dir) / meta_file).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def current_build(out_dir: str | Path, meta_file: str, build_hash: str, required: tuple[str, ...] = ()) -> bool:
    """Does ``out_dir`` hold a finished build made with ``build_hash`` (and every ``required`` file)?"""
    meta = read_build_meta(out_dir, meta_file)
    return meta is not None and meta.get("hash") == build_hash and all((Path(out_dir) / f).exists() for f in required)


@contextmanager
def build_directory(out_dir: str | Path, meta_file: str, what: str = "") -> Iterator[Path]:
    """Build a directory beside ``out_dir`` (the block writes into the yielded path, ``meta_file``
    included) and move it into place when the block ends; on an error the partial build is removed
    and ``out_dir`` is untouched, so a crash never leaves a half-built directory. An existing
    ``out_dir`` that is not a build (no ``meta_file``; ``what`` names the kind) is never overwritten: FileExistsError, before
    anything is built."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / meta_file).exists():
        kind = f"{what} build" if what else "build"
        raise FileExistsError(f"{out_dir} exists and is not a {kind} ({meta_file} missing); refusing to overwrite it")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not (tmp / meta_file).is_file():
            raise RuntimeError(f"build of {out_dir}: the builder wrote no {meta_file}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
