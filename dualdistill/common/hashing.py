"""Short stable hashes of JSON-able values: the one definition used for config, data and model identities.

    stable_hash({"teachers": ..., "seed": 0})      # '3f9c0a1b2d4e'

Keys are sorted and the encoding is fixed, so a hash depends only on the value (not on dict order,
the Python version or ``PYTHONHASHSEED``). Values that JSON cannot encode are written with ``str``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical_json(value: Any) -> str:
    """The text a hash is taken of: sorted keys, no spaces, unicode kept, ``str`` for the rest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stable_hash(value: Any, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def hash_lines(lines: Iterable[str], length: int = 16) -> str:
    """Hash of a collection of text lines, independent of their order (e.g. records of a file)."""
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode())
    return h.hexdigest()[:length]
