"""Exact SFT loss masks from segment kinds: which tokens of a training example carry loss (METHOD §3).

    from dualdistill.training.masking import tokenize_with_labels
    enc = tokenize_with_labels(tok, ex["prompt"], ex["segments"],
                               mask_until_first_transition=ex["mask_until_first_transition"])
    enc["labels"]                    # -100 where no loss (views: dualdistill.report.mask_views)

The text is ``prompt + render(segments)``; masks are decided on *characters* from the segment
spans (``formatting.segment_spans``), then mapped to tokens with ONE tokenizer call that returns
offsets — linear time, no re-decoding (the official dataloader decodes the completion one token
at a time and counts tags in the growing text, with off-by-ones at the tags: 0.9 s for a
16.5k-token example, 32× this module, ``bench/masking_bench.py --reference``).

Text formats (``text_format``, a training example's field of that name): ``project`` renders with
:func:`dualdistill.formats.formatting.render`; ``official`` with :func:`dualdistill.formats.official.render` (the
official data's layout: transitions inside think blocks, a code→text transition owning the
``<think>`` it opens; spans from ``official.segment_spans``, a segment's span being its
``pre + text + post``). The rules below are the same for both.

Character rules (a segment's span is its whole rendered text: opening tag, text, closing tag and
the newline that ends it, e.g. ``<code>\\n...\\n</code>\\n``):

- the prompt: masked;
- ``executor`` segments (tags and contents) and ``notice`` segments (call-cap notices): written by
  the environment, masked;
- ``code`` segments: trained only if their execution status is ``ok``. The status is
  ``meta["status"]`` of the code segment; if it has none, that of the ``executor`` segment right
  after it; if neither says anything the code counts as never run (``not_run``) and is masked.
  A failed block is masked together with its trailing newline (``</code>\\n``);
- with ``mask_until_first_transition``: everything of the completion before the first
  ``transition`` segment is masked; the transition sentence and what follows are trained (subject
  to the rules above). Without any transition segment the flag has no effect;
- everything else (think, answer, transition, text, ok code) is trained, including its tags;
- the EOS token (``eos=True``) is appended as a token id and trained.

Token rule (straddling): a token is trained iff **at least one of its characters is trained**, so
every character the student should learn is covered by a trained token; a token that mixes
environment and student characters (e.g. a merged ``">\\n<"``) is trained. Tokens with an empty
offset span take the status of the character they start at.

The tokenizer call uses ``add_special_tokens=False``: the prompt carries its own BOS text.

Against the official dataloader (``TrainData`` of ``sft/dataloader.py``, run on the same text and
tokenizer by ``tests/test_official_masks.py``) the labels differ only at boundary tokens:

- an executor block or a failed code block: the official rule masks from the token that completes
  the opening tag to the token before the one that completes the closing tag, so it trains the
  opening tag's earlier tokens, the token completing the closing tag and the whitespace after it —
  all masked here (the environment wrote them, or they belong to the failed block);
- a token straddling a masked and a trained character: trained here, masked there when the
  official count says "inside";
- before the first transition (``mask_until_first_transition``): the official rule leaves the
  two tokens before the sentence trained (its token count includes BOS); masked here.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import Segment

IGNORE_INDEX = -100
ENVIRONMENT_KINDS = ("executor", "notice")
TEXT_FORMATS = ("project", "official")


def render_completion(segments: list[Segment], text_format: str = "project") -> str:
    """The completion text of segments in ``text_format`` (``project`` | ``official``)."""
    if text_format == "official":
        return official.render(segments)
    if text_format != "project":
        raise ValueError(f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}")
    return formatting.render(segments)


def _spans(segments: list[Segment], text_format: str) -> list[tuple[int, int, int, int]]:
    if text_format == "official":
        return official.segment_spans(segments)
    if text_format != "project":
        raise ValueError(f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}")
    return formatting.segment_spans(segments)


def code_status(segments: list[Segment], i: int) -> str:
    """Execution status of code segment ``i``: its own ``meta["status"]``, else the status of the
    executor segment right after it, else ``not_run``."""
    status = segments[i].meta.get("status")
    if status is None and i + 1 < len(segments) and segments[i + 1].kind == "executor":
        status = segments[i + 1].meta.get("status")
    return str(status) if status is not None else "not_run"


def segment_trained(segments: list[Segment], i: int) -> bool:
    """Whether segment ``i`` carries loss by kind and status (ignoring the transition rule)."""
    kind = segments[i].kind
    if kind in ENVIRONMENT_KINDS:
        return False
    if kind == "code":
        return code_status(segments, i) == "ok"
    return True


def trained_char_spans(prompt: str, completion: list[Segment] | list[dict[str, Any]], *,
                       mask_until_first_transition: bool = False, text_format: str = "project"
                       ) -> list[tuple[int, int]]:
    """Sorted, merged ``(start, end)`` spans of ``prompt + render_completion(completion, text_format)``
    that carry loss."""
    segments = formatting.as_segments(completion)
    first_transition = next((i for i, s in enumerate(segments) if s.kind == "transition"), None)
    start_at = first_transition if (mask_until_first_transition and first_transition is not None) else 0
    base = len(prompt)
    spans: list[tuple[int, int]] = []
    for i, (start, end, _, _) in enumerate(_spans(segments, text_format)):
        if i < start_at or not segment_trained(segments, i) or start == end:
            continue
        if spans and spans[-1][1] == base + start:
            spans[-1] = (spans[-1][0], base + end)
        else:
            spans.append((base + start, base + end))
    return spans


def token_trained(offsets: list[tuple[int, int]] | np.ndarray, spans: list[tuple[int, int]], n_chars: int) -> np.ndarray:
    """Boolean per token: does its character span ``[s, e)`` contain a trained character?

    Linear in characters + tokens (prefix sums over a per-character trained mask)."""
    inside = np.zeros(n_chars + 1, dtype=np.int32)
    for s, e in spans:
        inside[s] += 1
        inside[e] -= 1
    cum = np.zeros(n_chars + 1, dtype=np.int64)
    np.cumsum(np.cumsum(inside[:n_chars]) > 0, out=cum[1:])
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts = np.minimum(off[:, 0], n_chars)
    ends = np.minimum(np.maximum(off[:, 1], starts + 1), n_chars)
    starts = np.minimum(starts, ends)
    return (cum[ends] - cum[starts]) > 0


def tokenize_with_labels(tokenizer: Any, prompt: str, completion: list[Segment] | list[dict[str, Any]], *,
                         mask_until_first_transition: bool = False, max_length: int | None = None,
                         eos: bool = True, return_offsets: bool = False, text_format: str = "project"
                         ) -> dict[str, Any]:
    """Token ids and labels (``-100`` where no loss) of one training example whose completion is
    rendered in ``text_format``.

    Returns ``input_ids``, ``labels`` (lists of int), ``trained_spans`` (character spans of
    ``text``), ``text``, ``num_trained``, ``truncated`` (``max_length`` cut the sequence, keeping
    its start) and, with ``return_offsets``, ``offsets`` (``[start, end]`` per token in ``text``;
    the EOS token gets ``[len, len]``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_with_labels needs a fast (Rust) tokenizer: offsets are not available otherwise")
    segments = formatting.as_segments(completion)
    text = prompt + render_completion(segments, text_format)
    spans = trained_char_spans(prompt, segments, mask_until_first_transition=mask_until_first_transition,
                               text_format=text_format)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    flat = np.fromiter(chain.from_iterable(enc["offset_mapping"]), dtype=np.int64, count=2 * len(ids))
    offsets = flat.reshape(-1, 2)
    trained = token_trained(offsets, spans, len(text))
    if eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("eos=True but the tokenizer has no eos_token")
        ids = np.append(ids, tokenizer.eos_token_id)
        trained = np.append(trained, True)
        offsets = np.vstack([offsets, [[len(text), len(text)]]])
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, trained, offsets = ids[:max_length], trained[:max_length], offsets[:max_length]
    labels = np.where(trained, ids, IGNORE_INDEX)
    out = {
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "trained_spans": spans,
        "text": text,
        "num_trained": int(trained.sum()),
        "truncated": bool(truncated),
    }
    if return_offsets:
        out["offsets"] = offsets.tolist()
    return out


# --- a training example's encoding ---------------------------------------------------------------------
def example_encoding(tokenizer: Any, example: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """:func:`tokenize_with_labels` of a training example (its prompt, segments, mask flag and text
    format); ``kw`` goes to it (``max_length``, ``eos``, ``return_offsets``)."""
    prompt, segments, flag, text_format = example_fields(example)
    return tokenize_with_labels(tokenizer, prompt, segments, mask_until_first_transition=flag,
                                text_format=text_format, **kw)


def example_fields(example: dict[str, Any]) -> tuple[str, list[Segment], bool, str]:
    for field in ("prompt", "segments"):
        if field not in example:
            raise KeyError(f"training example {example.get('key', '?')!r} has no field {field!r}")
    return (example["prompt"], formatting.as_segments(example["segments"]),
            bool(example.get("mask_until_first_transition", False)), example.get("text_format") or "project")
