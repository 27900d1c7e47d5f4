"""search/jql returns the fields and expansions asked for, typed as GET /field declares them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.fakejira.jira_pages import ok_json, walk_token_pages

EVERY_ISSUE = "created >= 0 ORDER BY key"
JIRA_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$")


@pytest.fixture
def field_catalog(reader: httpx.Client) -> dict[str, dict]:
    return {f["id"]: f for f in ok_json(reader.get("/rest/api/3/field"))}


@pytest.fixture
def all_fields(reader: httpx.Client) -> list[dict]:
    issues, _ = walk_token_pages(reader, EVERY_ISSUE, 100, fields="*all")
    return issues


def field_sets(reader: httpx.Client, fields: str) -> list[set[str]]:
    issues, _ = walk_token_pages(reader, EVERY_ISSUE, 100, fields=fields)
    return [set(issue.get("fields", {})) for issue in issues]


def test_explicit_field_list_returns_just_those_fields(reader: httpx.Client) -> None:
    assert all(s == {"summary", "status"} for s in field_sets(reader, "summary,status"))


def test_navigable_fields_leave_out_comment_and_worklog(
    reader: httpx.Client, field_catalog: dict[str, dict]
) -> None:
    navigable = {fid for fid, f in field_catalog.items() if f.get("navigable")}
    for returned in field_sets(reader, "*navigable"):
        assert returned <= navigable
        assert {"summary", "status", "updated"} <= returned
        assert not returned & {"comment", "worklog"}


def test_all_fields_include_every_catalogued_field(
    all_fields: list[dict], field_catalog: dict[str, dict]
) -> None:
    for issue in all_fields:
        assert set(issue["fields"]) <= set(field_catalog)
        assert {"comment", "worklog", "summary", "created", "updated"} <= set(issue["fields"])
    present = set().union(*(set(i["fields"]) for i in all_fields))
    assert present == set(field_catalog)


@pytest.mark.parametrize(
    ("fields", "excluded"),
    [("*all,-comment", {"comment"}), ("-description", {"description"})],
)
def test_minus_prefix_excludes_a_field(
    reader: httpx.Client, fields: str, excluded: set[str]
) -> None:
    for returned in field_sets(reader, fields):
        assert returned and not returned & excluded


def matches_declared_type(value: Any, schema: dict) -> bool:
    kind = schema["type"]
    if kind == "array":
        item_schema = {"type": schema.get("items", "any")}
        return isinstance(value, list) and all(matches_declared_type(v, item_schema) for v in value)
    checks = {
        "string": lambda v: isinstance(v, str | dict),  # description and rich text are ADF
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "date": lambda v: bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)),
        "datetime": lambda v: bool(JIRA_TIMESTAMP.match(v)),
        "user": lambda v: isinstance(v, dict) and "accountId" in v,
        "option": lambda v: isinstance(v, dict) and {"id", "value"} <= v.keys(),
        "component": lambda v: isinstance(v, dict) and {"id", "name"} <= v.keys(),
        "version": lambda v: isinstance(v, dict) and {"id", "name"} <= v.keys(),
        # Items of `subtasks` (an issue: id, key) and of `issuelinks` (a link: id, type and
        # the other issue on one side).
        "issuelinks": lambda v: isinstance(v, dict) and "id" in v and (
            "key" in v or ("type" in v and bool({"inwardIssue", "outwardIssue"} & v.keys()))),
        "issuelink": lambda v: isinstance(v, dict) and {"id", "key"} <= v.keys(),
    }
    check = checks.get(kind, lambda v: isinstance(v, dict))
    return check(value)


def test_field_values_have_the_type_the_field_catalog_declares(
    all_fields: list[dict], field_catalog: dict[str, dict]
) -> None:
    mismatched = []
    for issue in all_fields:
        for fid, value in issue["fields"].items():
            schema = field_catalog[fid].get("schema")
            if value is None or schema is None:
                continue
            if not matches_declared_type(value, schema):
                mismatched.append((issue["key"], fid, schema["type"], repr(value)[:80]))
    assert not mismatched, mismatched[:10]


def test_custom_fields_of_several_types_carry_values(
    all_fields: list[dict], field_catalog: dict[str, dict]
) -> None:
    custom_types = {
        field_catalog[fid]["schema"]["type"]
        for issue in all_fields
        for fid, value in issue["fields"].items()
        if fid.startswith("customfield_") and value not in (None, [])
    }
    assert {"number", "option", "array", "user", "date"} <= custom_types


def test_timestamps_are_in_jira_format_with_varying_offsets(all_fields: list[dict]) -> None:
    offsets = set()
    for issue in all_fields:
        for name in ("created", "updated"):
            value = issue["fields"][name]
            assert JIRA_TIMESTAMP.match(value), value
            offsets.add(value[-5:])
        created = parse_jira_datetime(issue["fields"]["created"])
        assert created <= parse_jira_datetime(issue["fields"]["updated"])
    assert len(offsets) > 2


def test_description_is_atlassian_document_format(all_fields: list[dict]) -> None:
    descriptions = [i["fields"]["description"] for i in all_fields if i["fields"]["description"]]
    assert descriptions
    for doc in descriptions:
        assert doc["type"] == "doc" and doc["version"] == 1 and isinstance(doc["content"], list)


def test_subtasks_and_parents_point_at_each_other(all_fields: list[dict]) -> None:
    by_key = {i["key"]: i for i in all_fields}
    linked = 0
    for issue in all_fields:
        for subtask in issue["fields"].get("subtasks") or []:
            linked += 1
            assert by_key[subtask["key"]]["fields"]["parent"]["key"] == issue["key"]
    assert linked > 0


def test_names_expansion_names_every_returned_field(
    reader: httpx.Client, field_catalog: dict[str, dict]
) -> None:
    _, pages = walk_token_pages(reader, EVERY_ISSUE, 100, fields="*all", expand="names")
    for page in pages:
        returned = set().union(*(set(i["fields"]) for i in page["issues"]))
        assert returned <= set(page["names"])
        assert all(page["names"][fid] == field_catalog[fid]["name"] for fid in returned)


def test_rendered_fields_expansion_adds_rendered_fields(reader: httpx.Client) -> None:
    plain, _ = walk_token_pages(reader, EVERY_ISSUE, 50, fields="summary,description")
    rendered, _ = walk_token_pages(reader, EVERY_ISSUE, 50, fields="summary,description",
                                   expand="renderedFields")
    assert not any("renderedFields" in issue for issue in plain)
    assert all("renderedFields" in issue for issue in rendered)
