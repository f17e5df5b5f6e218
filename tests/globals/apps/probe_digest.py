"""The digest a probe reports of a whole global store (the tests compute it of their model)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def digest(entries: list[tuple[str, Any]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for key, value in sorted(entries, key=lambda kv: kv[0]):
        h.update(orjson.dumps([key, value], option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()
