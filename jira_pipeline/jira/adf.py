"""Plain text of Atlassian Document Format (ADF), the rich text Cloud's REST v3 sends."""

from __future__ import annotations

from typing import Any

# Nodes whose children are blocks: each child block becomes its own paragraph of text.
_BLOCK_CONTAINERS = {"doc", "bulletList", "orderedList", "listItem", "blockquote", "panel",
                     "table", "tableRow", "tableHeader", "tableCell", "layoutSection",
                     "layoutColumn", "expand", "nestedExpand", "decisionList", "taskList"}


def is_adf(value: Any) -> bool:
    """Whether `value` is an ADF document (its root `doc` node)."""
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


def adf_to_text(value: Any) -> str | None:
    """The text of rich text as Jira's v2 API renders it: ADF block nodes as paragraphs a blank
    line apart, hard breaks as newlines, mentions, emoji and cards by their text; a plain string
    (v2, Data Center) is returned as it is, and anything else as None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return None
    return "\n\n".join(block for block in _blocks(value) if block)


def _blocks(node: dict[str, Any]) -> list[str]:
    if node.get("type") in _BLOCK_CONTAINERS:
        blocks: list[str] = []
        for child in node.get("content") or []:
            if isinstance(child, dict):
                blocks.extend(_blocks(child))
        return blocks
    if node.get("type") == "rule":
        return []
    return [_inline(node)]


def _inline(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    sent = node.get("attrs")
    attrs: dict[str, Any] = sent if isinstance(sent, dict) else {}
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        return str(attrs.get("text") or "")
    if kind == "emoji":
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    if kind == "date":
        return str(attrs.get("timestamp") or "")
    if kind == "status":
        return str(attrs.get("text") or "")
    if kind in _BLOCK_CONTAINERS:
        return "\n".join(block for block in _blocks(node) if block)
    return "".join(_inline(child) for child in node.get("content") or [])
