"""`adf_to_text`: rich text as plain text, the way Jira's v2 API renders ADF."""

from __future__ import annotations

from jira_pipeline.fakejira.render import adf, adf_text
from jira_pipeline.jira.adf import adf_to_text, is_adf


def paragraph(*inline: dict) -> dict:
    return {"type": "paragraph", "content": list(inline)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def test_paragraphs_are_a_blank_line_apart_as_the_fakes_v2_bodies() -> None:
    doc = adf(["First thought.", "Second thought."])
    assert adf_to_text(doc) == adf_text(doc) == "First thought.\n\nSecond thought."


def test_inline_nodes_keep_their_text() -> None:
    doc = {"type": "doc", "version": 1, "content": [paragraph(
        text("Ping "), {"type": "mention", "attrs": {"id": "5b10", "text": "@Ada"}},
        text(" "), {"type": "emoji", "attrs": {"shortName": ":tada:", "text": "🎉"}},
        {"type": "hardBreak"}, text("see "),
        {"type": "inlineCard", "attrs": {"url": "https://example.com/x"}},
    )]}
    assert adf_to_text(doc) == "Ping @Ada 🎉\nsee https://example.com/x"


def test_lists_quotes_and_code_are_paragraphs_and_rules_vanish() -> None:
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 2}, "content": [text("Steps")]},
        {"type": "orderedList", "content": [
            {"type": "listItem", "content": [paragraph(text("open it"))]},
            {"type": "listItem", "content": [paragraph(text("close it"))]},
        ]},
        {"type": "rule"},
        {"type": "blockquote", "content": [paragraph(text("quoted"))]},
        {"type": "codeBlock", "content": [text("x = 1")]},
    ]}
    assert adf_to_text(doc) == "Steps\n\nopen it\n\nclose it\n\nquoted\n\nx = 1"


def test_plain_text_passes_and_other_values_are_none() -> None:
    assert adf_to_text("v2 sends a string") == "v2 sends a string"
    assert adf_to_text(None) is None and adf_to_text(42) is None
    assert is_adf(adf(["x"])) and not is_adf({"type": "paragraph"})
