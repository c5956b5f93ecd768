"""Views of SFT loss masks: which tokens of a training example carry loss, coloured (METHOD §3).

    HTML(mask_view_html(tokenizer, example))   # notebooks: trained tokens on green, masked on grey
    print(mask_view_ansi(tokenizer, example))  # a terminal

The masks themselves are :mod:`dualdistill.training.masking`; this module only draws them.
"""

from __future__ import annotations

import html
from typing import Any

from dualdistill.training.masking import (
    IGNORE_INDEX,
    example_encoding,
    example_fields,
    render_completion,
    trained_char_spans,
)


def mask_pieces(tokenizer: Any | None, example: dict[str, Any], *, show_prompt: bool = False) -> list[tuple[str, bool]]:
    """``(text, trained)`` per token of a training example (tokenizer ``None``: per character span,
    for a run whose student tokenizer does not exist yet).

    With ``show_prompt=False`` the prompt's tokens are collapsed into one masked placeholder
    (a token straddling the prompt's end is shown whole)."""
    prompt, segments, flag, text_format = example_fields(example)
    if tokenizer is None:
        text = prompt + render_completion(segments, text_format)
        spans = trained_char_spans(prompt, segments, mask_until_first_transition=flag, text_format=text_format)
        pieces, pos = [], 0
        for s, e in spans:
            if s > pos:
                pieces.append((text[pos:s], False))
            pieces.append((text[s:e], True))
            pos = e
        if pos < len(text):
            pieces.append((text[pos:], False))
        if not show_prompt:
            pieces = _collapse_prompt(pieces, len(prompt), f"[prompt: {len(prompt)} characters]")
        return pieces
    enc = example_encoding(tokenizer, example, return_offsets=True)
    text = enc["text"]
    pieces, prev_end = [], 0
    eos_text = tokenizer.eos_token or ""
    for (s, e), label in zip(enc["offsets"], enc["labels"], strict=True):
        piece = eos_text if s == e == len(text) else text[max(s, prev_end):e]
        prev_end = max(prev_end, e)
        pieces.append((piece, label != IGNORE_INDEX))
    if not show_prompt:
        n_prompt = sum(1 for _, e in enc["offsets"] if e <= len(prompt))
        head = f"[prompt: {n_prompt} tokens]"
        pieces = [(head, False)] + pieces[n_prompt:] if n_prompt else pieces
    return pieces


def _collapse_prompt(pieces: list[tuple[str, bool]], n_chars: int, head: str) -> list[tuple[str, bool]]:
    out, pos = [(head, False)], 0
    for text, trained in pieces:
        if pos + len(text) <= n_chars:
            pos += len(text)
            continue
        cut = max(0, n_chars - pos)
        out.append((text[cut:], trained))
        pos += len(text)
    return out


_HTML_COLORS = {True: ("#b7ebc0", "#8fd9a0"), False: ("#e4e4e4", "#cfcfcf")}


def mask_view_html(tokenizer: Any | None, example: dict[str, Any], *, show_prompt: bool = False,
                   max_tokens: int | None = None) -> str:
    """HTML: trained tokens on green, masked on grey (alternating shades mark token boundaries)."""
    pieces = mask_pieces(tokenizer, example, show_prompt=show_prompt)
    shown = pieces if max_tokens is None else pieces[:max_tokens]
    unit = "tokens" if tokenizer is not None else "spans"
    if tokenizer is not None:
        enc = example_encoding(tokenizer, example)
        counts = f"{len(enc['input_ids'])} tokens, {enc['num_trained']} trained"
    else:
        counts = f"{sum(len(t) for t, tr in pieces if tr)} trained characters"
    spans = []
    for i, (text, trained) in enumerate(shown):
        color = _HTML_COLORS[trained][i % 2]
        body = html.escape(text).replace("\n", "↵\n")
        title = "trained" if trained else "masked (no loss)"
        spans.append(f'<span style="background:{color}" title="{title}">{body}</span>')
    more = f"<br><i>… {len(pieces) - len(shown)} more {unit}</i>" if len(shown) < len(pieces) else ""
    legend = (f'<div style="font-family:sans-serif;font-size:90%">{counts} · '
              f'<span style="background:{_HTML_COLORS[True][0]}">trained</span> '
              f'<span style="background:{_HTML_COLORS[False][0]}">masked</span></div>')
    return (f'{legend}<pre style="white-space:pre-wrap;font-size:85%;line-height:1.5">'
            f'{"".join(spans)}</pre>{more}')


def mask_view_ansi(tokenizer: Any | None, example: dict[str, Any], *, show_prompt: bool = False,
                   max_tokens: int | None = None) -> str:
    """Terminal view: trained tokens on green, masked on grey (two shades alternate per token)."""
    pieces = mask_pieces(tokenizer, example, show_prompt=show_prompt)
    shown = pieces if max_tokens is None else pieces[:max_tokens]
    codes = {True: ("\x1b[30;42m", "\x1b[30;102m"), False: ("\x1b[37;100m", "\x1b[30;47m")}
    out = []
    for i, (text, trained) in enumerate(shown):
        color = codes[trained][i % 2]
        out.append("\n".join(f"{color}{line}\x1b[0m" if line else "" for line in text.replace("\n", "↵\n").split("\n")))
    tail = f"\n… {len(pieces) - len(shown)} more" if len(shown) < len(pieces) else ""
    return "".join(out) + tail
