"""The paper's data in the official format: import the released T1, export T1/T2 for the official code.

    examples, report = released_examples(cfg.composition.released, prompt_style="official")
    export_official(examples, RunPaths.of(cfg).t1_official)  # {"problem", "answer", "synthetic_data"}

**The released T1** is the Hugging Face dataset ``VanishD/DualDistill``. Its schema is not written
down with the official code, so it is inferred from what that code reads: the download script saves
the ``train`` split's rows as JSON lines (``dataset/train/dual_distill_data.jsonl``), ``sft/train.py``
reads those lines and ``sft/dataloader.py`` takes two fields of each — ``problem`` (the problem
text, put between ``<｜User｜>`` and ``<｜Assistant｜>``) and ``synthetic_data`` (everything after
``<｜Assistant｜>``, official format, normally starting with ``<think>``). Those two columns are
assumed (their names are parameters); an answer column is used when present, nothing else is read.

Import does what the official dataloader does with a row: a row its format check refuses
(:func:`official.accepted`) is dropped and counted; the text is cut after its first ``</answer>``;
the segments are :func:`official.parse` (lossless: the training text is the row's text byte for
byte) with the official turn-over sentences (:data:`official.TURN_OVER`) as transitions — the
code→text ones only where they open a think block, as the dataloader matches them — so the loss is
masked before the first of them exactly when the dataloader masks (verify sentences stay reasoning,
trained). ``case`` and ``first`` are inferred from the sentences (the data does not say): text→code
→ (01, text), code→text → (01, agent), a verify sentence → 11, none → 10 (first = agent when the
trajectory has code).

**Export** writes one line per training example — the problem, its answer and ``synthetic_data`` =
:func:`official.render` of its segments (after :func:`official.place_transitions` for a
project-format example) — which ``sft/train.py --data_path`` reads as it reads the released T1. An
example whose text the official format check would refuse (a line outside any block) is left out
and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualdistill.common.store import record_key, write_jsonl
from dualdistill.config import ReleasedT1Config
from dualdistill.data.loaders import hf_rows
from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import Segment
from dualdistill.formats.problem import normalize_gold
from dualdistill.formats.records import TrainingExample

ANSWER_FIELDS = ("answer", "final_answer", "ground_truth")
SOURCE = "released"


# --- import ------------------------------------------------------------------------------------------
def _turn_over_segments(text: str) -> list[Segment]:
    """``official.parse`` with the turn-over sentences as transitions; a code→text sentence that does
    not open its think block right after ``<think>\\n`` is reasoning text (the dataloader looks for
    ``"<think>\\nWait, the code ..."``)."""
    segments = official.parse(text, transitions=official.TURN_OVER)
    for seg in segments:
        if (seg.kind == "transition" and seg.text != formatting.TEXT_TO_CODE
                and not str(seg.meta.get("pre", "")).endswith("<think>\n")):
            seg.kind = "think"
            seg.meta["was"] = "transition"
    return segments


def _case_first(text: str, segments: list[Segment]) -> tuple[str, str]:
    turn = next((s.text for s in segments if s.kind == "transition"), None)
    if turn == formatting.TEXT_TO_CODE:
        return "01", "text"
    if turn is not None:
        return "01", "agent"
    if formatting.VERIFY_WITH_TEXT in text:
        return "11", "agent"
    if formatting.VERIFY_WITH_CODE in text:
        return "11", "text"
    return "10", "agent" if any(s.kind == "code" for s in segments) else "text"


def released_example(row: dict[str, Any], index: int, src: ReleasedT1Config, *, prompt_style: str = "official",
                     mask: bool = True) -> dict[str, Any] | None:
    """The training example of one released row, or None when the official format check refuses it.
    ``mask=False`` (``composition.mask_before_transition: never``) trains the part before the turn-over too."""
    problem, text = row.get(src.problem_field), row.get(src.text_field)
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"{src.path} row {index}: column {src.problem_field!r} is not a problem text")
    if not isinstance(text, str):
        raise ValueError(f"{src.path} row {index}: column {src.text_field!r} is not a trajectory text")
    if not official.accepted(text):
        return None
    if "</answer>" in text:
        text = text.split("</answer>")[0] + "</answer>"
    segments = _turn_over_segments(text)
    answer_field = src.answer_field or next((f for f in ANSWER_FIELDS if row.get(f) is not None), None)
    answer = normalize_gold(row[answer_field]) if answer_field and row.get(answer_field) is not None else None
    case, first = _case_first(text, segments)
    prob = {"id": f"{SOURCE}/{index}", "problem": problem, "answer": answer, "source": SOURCE}
    return TrainingExample.build(
        prob, key=record_key(SOURCE, index, "t1"), source="t1", text_format="official",
        prompt=formatting.build_prompt(problem, code=True, style=prompt_style), segments=segments,
        mask_until_first_transition=mask and any(s.kind == "transition" for s in segments),
        case=case, first=first, sample=0,
    ).to_dict()


def released_examples(src: ReleasedT1Config, *, prompt_style: str = "official", mask: bool = True
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """T1 from the released data (``src.path`` through ``datasets``): the examples, and a report of
    rows read, kept and refused by the official format check."""
    rows = hf_rows(src.path, src.split)
    columns = list(getattr(rows, "column_names", None) or [])
    absent = [c for c in (src.problem_field, src.text_field) if columns and c not in columns]
    if absent:
        raise ValueError(f"released T1 {src.path}: no column {absent} (has {columns[:10]}); "
                         "set composition.released.problem_field / text_field")
    examples, refused, n = [], [], 0
    for index, row in enumerate(rows):
        if src.limit and n >= src.limit:
            break
        n += 1
        ex = released_example(dict(row), index, src, prompt_style=prompt_style, mask=mask)
        if ex is None:
            refused.append(index)
        else:
            examples.append(ex)
    return examples, {"path": src.path, "split": src.split, "rows": n, "kept": len(examples),
                      "refused_by_format_check": len(refused), "refused_rows": refused[:20]}


# --- export ------------------------------------------------------------------------------------------
def official_text(example: dict[str, Any]) -> str:
    """The official-format ``synthetic_data`` of a training example."""
    segments = formatting.as_segments(example["segments"])
    if (example.get("text_format") or "project") != "official":
        segments = official.place_transitions(segments)
    return official.render(segments)


def export_official(examples: list[dict[str, Any]], path: str | Path) -> dict[str, Any]:
    """Write ``examples`` as official-format lines (``problem``, ``answer``, ``synthetic_data``) to
    ``path``; returns the path and how many were written and left out (and why)."""
    rows, skipped = [], {"format": 0, "no_problem_text": 0}
    for ex in examples:
        if not ex.get("problem_text"):
            skipped["no_problem_text"] += 1
            continue
        text = official_text(ex)
        if not official.accepted(text):
            skipped["format"] += 1
            continue
        rows.append({"problem": ex["problem_text"], "answer": ex.get("answer"), "synthetic_data": text})
    write_jsonl(path, rows)
    return {"path": str(path), "rows": len(rows), "skipped": skipped}
