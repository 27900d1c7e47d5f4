"""MongoDB's 16 MiB document limit: measure a document as BSON and trim its `raw` to fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

# MongoDB refuses a document whose BSON encoding is larger than this (BSONObjMaxUserSize).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# No JSON value grows more than 8 times as BSON (the worst case, `0,` in a long array, takes 2
# bytes of JSON and 12 of BSON), so a document this small as JSON needs no BSON measurement.
JSON_SAFE_BYTES = MAX_DOCUMENT_BYTES // 8
# Parts of `raw` are dropped at most this deep (`fields.comment.comments`,
# `changelog.histories`): deeper cuts would leave odd half-objects.
_MAX_DEPTH = 3
_CODEC: CodecOptions[Any] = CodecOptions(
    uuid_representation=UuidRepresentation.STANDARD, tz_aware=True
)


class DocumentTooLargeError(ValueError):
    """A document over the limit even with its whole `raw` trimmed (its key fields are too big)."""


def bson_size(document: Mapping[str, Any]) -> int:
    """The size of `document` as MongoDB stores it (InvalidDocument if BSON cannot hold it)."""
    return len(bson.encode(document, codec_options=_CODEC))


def _value_size(value: Any) -> int:
    return bson_size({"": value})


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def fit_raw(document: dict[str, Any], limit: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """`document` if its BSON fits in `limit` bytes, else a copy whose `raw` has lost its largest
    parts (long text fields, comment/worklog/changelog arrays) until it fits, marked
    `raw_truncated: true` with the dropped dotted paths in `raw_truncated_paths`.

    The caller's `raw` is never modified (only the objects on a dropped path are copied).
    DocumentTooLargeError if the document does not fit even without any of `raw`.
    """
    size = bson_size(document)
    if size <= limit:
        return document
    raw = document.get("raw")
    dropped: list[str] = []
    trimmed: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    out = {**document, "raw": trimmed, "raw_truncated": True, "raw_truncated_paths": dropped}
    if not isinstance(raw, dict) and raw is not None:
        dropped.append("raw")
    size = bson_size(out)
    while size > limit:
        path = _largest_part(trimmed, size - limit)
        if path is None:
            raise DocumentTooLargeError(
                f"{mib(size)} ({size} bytes) even with all of raw dropped, over the "
                f"{mib(limit)} document limit"
            )
        _drop(trimmed, path)
        dropped.append(".".join(path))
        size = bson_size(out)
    return out


def _largest_part(node: dict[str, Any], excess: int) -> list[str] | None:
    """The path of the part of `node` to drop next: its largest entry, or inside it when one of
    that entry's own entries alone is big enough to bring the document under the limit."""
    path: list[str] = []
    while node:
        _size, key = max((_value_size(value), key) for key, value in node.items())
        child = node[key]
        if isinstance(child, dict) and child and len(path) + 1 < _MAX_DEPTH:
            if max(_value_size(value) for value in child.values()) >= excess:
                path.append(key)
                node = child
                continue
        return [*path, key]
    return path or None


def _drop(root: dict[str, Any], path: list[str]) -> None:
    """Delete `path` from `root`, copying each object on the way so shared JSON is untouched."""
    parent = root
    for key in path[:-1]:
        child = dict(parent[key])
        parent[key] = child
        parent = child
    del parent[path[-1]]
