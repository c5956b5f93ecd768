"""Loaders: problems from every kind of source, chosen by ``DataSource.kind`` from :data:`LOADERS`.

    problems = load_source(DataSource(kind="dualdistill", path=".../test/amc.jsonl"))

Sources: the five DualDistill files (four schemas, detected per row), generic JSON/JSONL with a
field map, Hugging Face datasets (``datasets.load_dataset``; e.g. DeepMath-103K with its
``r1_solution_1..3`` kept in ``meta`` for replay), and the synthetic world. A malformed row is an
error naming file and line, or — with ``on_malformed: skip`` — skipped and counted.

A source's ``join`` adds fields of another dataset to its problems, matched by the exact problem
text (:func:`join_fields`): the paper's 985-problem list with DeepMath-103K's R1 solutions.
:func:`train_problems` is the one definition of the training problems (near-duplicates of the test
sets removed), for teacher rollouts and self-distillation alike.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dualdistill.config import DataConfig, DataSource, JoinSource, WorldConfig
from dualdistill.formats.problem import MalformedRecordError, Problem, normalize_gold
from dualdistill.world.families import generate_split

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    source: str
    loaded: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def _maybe_literal(value: Any) -> Any:
    """combinatorics300 stores dicts and lists as Python-literal strings."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _dualdistill_row(row: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """(problem, answer, meta) from any of the four DualDistill schemas."""
    if "prompt" in row:  # aime2025 / amc / combinatorics300
        prompt = _maybe_literal(row["prompt"])
        reward = _maybe_literal(row.get("reward_model"))
        if not isinstance(prompt, list) or not prompt or not isinstance(prompt[-1], dict):
            raise MalformedRecordError("prompt is not a list of messages")
        if not isinstance(reward, dict) or "ground_truth" not in reward:
            raise MalformedRecordError("reward_model.ground_truth missing")
        meta = {k: row[k] for k in ("data_source", "source") if row.get(k)}
        return prompt[-1].get("content", ""), reward["ground_truth"], meta
    if "problem" in row and "answer" in row:  # math500 / whole_training_set
        meta = {k: row[k] for k in ("subject", "level", "unique_id") if k in row}
        return row["problem"], row["answer"], meta
    raise MalformedRecordError(f"unknown schema (fields: {sorted(row)[:8]})")


def _read_rows(path: Path) -> Iterable[tuple[int, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            raise MalformedRecordError(f"{path}: expected a list of records")
        yield from enumerate(data, 1)
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, MalformedRecordError(f"not valid JSON ({err.msg})")


def _mapped_row(row: dict[str, Any], fmap: dict[str, str]) -> tuple[str, Any, dict[str, Any]]:
    pkey, akey = fmap.get("problem", "problem"), fmap.get("answer", "answer")
    if pkey not in row or akey not in row:
        raise MalformedRecordError(f"missing field {pkey!r} or {akey!r}")
    used = {pkey, akey}
    meta = {k: v for k, v in row.items() if k not in used}
    return row[pkey], row[akey], meta


def _finish(problem: Any, answer: Any, meta: dict[str, Any], *, source: str, index: int,
            src: DataSource) -> Problem:
    if not isinstance(problem, str) or not problem.strip():
        raise MalformedRecordError("empty problem text")
    ans = normalize_gold(answer)
    if not ans:
        raise MalformedRecordError("empty answer")
    fmap = src.field_map
    pid = meta.get(fmap["id"]) if "id" in fmap else None
    subset = meta.get(fmap["subset"]) if "subset" in fmap else src.subset
    if problem != problem.strip():  # the official code keeps the text as read (Problem.text_for)
        meta = {**meta, "problem_as_read": problem}
    return Problem(id=f"{source}/{pid if pid is not None else index}", problem=problem.strip(),
                  answer=ans, source=source, subset=subset if subset is None else str(subset), meta=meta)


def load_file(src: DataSource, report: LoadReport | None = None) -> list[Problem]:
    """A dualdistill or generic JSON/JSONL file."""
    path = Path(src.path or "")
    source = src.name or path.stem
    report = report or LoadReport(source)
    out: list[Problem] = []
    index = 0
    for lineno, row in _read_rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            if not isinstance(row, dict):
                raise MalformedRecordError("row is not a JSON object")
            if src.kind == "dualdistill":
                problem, answer, meta = _dualdistill_row(row)
            else:
                problem, answer, meta = _mapped_row(row, src.field_map)
            out.append(_finish(problem, answer, meta, source=source, index=index, src=src))
            index += 1
        except MalformedRecordError as err:
            msg = f"{path}:{lineno}: {err}"
            if src.on_malformed == "error":
                raise MalformedRecordError(msg) from None
            report.skipped += 1
            report.errors.append(msg)
        if src.limit and len(out) >= src.limit:
            break
    report.loaded = len(out)
    if report.skipped:
        log.warning("%s: skipped %d malformed rows (first: %s)", source, report.skipped, report.errors[0])
    return out


def hf_rows(path: str, split: str = "train") -> Any:
    """The rows of a dataset through ``datasets``: a local ``save_to_disk`` directory (a Dataset, or a
    DatasetDict's ``split``), a local JSON/JSONL/parquet file, or else a hub id (``load_dataset``)."""
    import datasets

    local = Path(path)
    if local.is_dir() and any((local / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise KeyError(f"{path}: no split {split!r} (has {sorted(ds)})")
            ds = ds[split]
        return ds
    if local.is_file():
        builder = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(local.suffix)
        if builder is None:
            raise ValueError(f"{path}: a local dataset file must be .json, .jsonl or .parquet")
        return datasets.load_dataset(builder, data_files=str(local), split="train")
    return datasets.load_dataset(path, split=split)


def load_hf(src: DataSource, report: LoadReport | None = None) -> list[Problem]:
    """A Hugging Face dataset (hub id or local dataset directory / data files)."""
    path = src.path or ""
    ds = hf_rows(path, src.split)
    fmap = {"problem": "question", "answer": "final_answer", **src.field_map}
    source = src.name or path.rstrip("/").split("/")[-1]
    report = report or LoadReport(source)
    out = []
    for i, row in enumerate(ds):
        try:
            problem, answer, meta = _mapped_row(dict(row), fmap)
            out.append(_finish(problem, answer, meta, source=source, index=i, src=src))
        except MalformedRecordError as err:
            if src.on_malformed == "error":
                raise MalformedRecordError(f"{path}[{src.split}] row {i}: {err}") from None
            report.skipped += 1
            report.errors.append(f"row {i}: {err}")
        if src.limit and len(out) >= src.limit:
            break
    report.loaded = len(out)
    return out


def load_synthetic(src: DataSource, world: WorldConfig | None = None) -> list[Problem]:
    """A split of the embedded default's synthetic world."""
    problems = generate_split(src.split, n=src.n, families=src.families, world=world)
    return problems[: src.limit] if src.limit else problems


# DataSource.kind -> loader(src, world)
LOADERS: dict[str, Callable[[DataSource, WorldConfig | None], list[Problem]]] = {
    "dualdistill": lambda src, world: load_file(src),
    "jsonl": lambda src, world: load_file(src),
    "hf": lambda src, world: load_hf(src),
    "synthetic": load_synthetic,
}


def join_fields(problems: list[Problem], join: JoinSource) -> int:
    """Copy ``join.fields`` of the rows of ``join.path`` whose ``join.problem_field`` equals a problem's text
    (both stripped; the first such row) into that problem's ``meta``. Returns how many problems
    matched; a problem without a match is an error naming it (``on_missing: error``) or keeps its meta.
    Only the text column is read for every row; the fields only for the matched rows."""
    wanted: dict[str, list[Problem]] = {}
    for p in problems:
        wanted.setdefault(p.problem.strip(), []).append(p)
    ds = hf_rows(join.path, join.split)
    columns = [join.problem_field, *join.fields]
    absent = [c for c in columns if c not in ds.column_names]
    if absent:
        raise MalformedRecordError(f"join {join.path}: no column {absent} (has {ds.column_names[:10]})")
    first: dict[str, int] = {}
    for i, text in enumerate(ds[join.problem_field]):
        key = text.strip() if isinstance(text, str) else None
        if key in wanted and key not in first:
            first[key] = i
    rows = ds.select(sorted(first.values())).select_columns(columns) if first else []
    for row in rows:
        for p in wanted[row[join.problem_field].strip()]:
            p.meta.update({f: row[f] for f in join.fields})
    missing = [p for key, ps in wanted.items() if key not in first for p in ps]
    if missing and join.on_missing == "error":
        raise MalformedRecordError(
            f"join {join.path}: {len(missing)} of {len(problems)} problems have no row whose {join.problem_field!r} is their "
            f"text (first: {missing[0].id}: {missing[0].problem[:80]!r}); set join.on_missing: keep to go on")
    if missing:
        log.warning("join %s: %d of %d problems without a match keep no %s", join.path, len(missing), len(problems),
                    join.fields)
    return len(problems) - len(missing)


def load_source(src: DataSource, *, world: WorldConfig | None = None) -> list[Problem]:
    """Problems of one configured source (its ``join`` applied)."""
    if src.kind not in LOADERS:
        raise ValueError(f"unknown data source kind {src.kind!r}; known: {sorted(LOADERS)}")
    problems = LOADERS[src.kind](src, world)
    if src.join is not None:
        join_fields(problems, src.join)
    return problems


def load_sources(sources: list[DataSource], *, world: WorldConfig | None = None) -> list[Problem]:
    out: list[Problem] = []
    for src in sources:
        out.extend(load_source(src, world=world))
    ids = [p.id for p in out]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate problem id {dup!r}: give sources distinct names")
    return out


def remove_near_duplicates(train: list[Problem], test: list[Problem], threshold: float = 90.0
                           ) -> tuple[list[Problem], list[Problem]]:
    """Train problems whose text matches a test problem with rapidfuzz ratio > threshold are
    removed (official: 90). Returns (kept, removed)."""
    from rapidfuzz import fuzz, process

    if not test:
        return list(train), []
    choices = [p.problem for p in test]
    kept, removed = [], []
    for p in train:
        hit = process.extractOne(p.problem, choices, scorer=fuzz.ratio, score_cutoff=threshold)
        (removed if hit is not None and hit[1] > threshold else kept).append(p)
    return kept, removed


def train_problems(data: DataConfig, world: WorldConfig | None = None) -> tuple[list[Problem], list[Problem]]:
    """The training problems of ``data.train`` minus near-duplicates of ``data.test`` (ratio above
    ``data.dedup_threshold``): (kept, removed). Teacher rollouts and self-distillation both use it, so
    a problem removed for contamination gets neither a rollout nor a self-distillation example.

    Synthetic (world) problems are not compared: their splits are disjoint by construction, and
    templated texts that differ only in their numbers score above any fuzzy-ratio threshold."""
    train, synthetic = [], set()
    for src in data.train:
        probs = load_source(src, world=world)
        train.extend(probs)
        if src.kind == "synthetic":
            synthetic.update(p.id for p in probs)
    ids = [p.id for p in train]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate problem id {next(i for i in ids if ids.count(i) > 1)!r} in data.train: "
                         "give sources distinct names")
    test = load_sources(data.test, world=world) if data.test else []
    _, removed = remove_near_duplicates([p for p in train if p.id not in synthetic], test, data.dedup_threshold)
    dropped = {p.id for p in removed}
    return [p for p in train if p.id not in dropped], removed
