"""The fake's dataset: deterministic from its seed, and shaped as Jira embeds and truncates data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import basic_client, walk_token_pages
from jira_pipeline_tests.openapi import assert_valid_schema

SNAPSHOT_REQUESTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/rest/api/3/project/search", {"expand": "description,lead"}),
    ("/rest/api/3/statuses/search", {}),
    ("/rest/api/3/status", {}),
    ("/rest/api/3/users/search", {"maxResults": 1000}),
    ("/rest/api/3/field", {}),
    ("/rest/api/3/search/jql", {
        "jql": "created >= 0 ORDER BY key",
        "fields": "*all",
        "expand": "changelog,names,renderedFields",
        "maxResults": 100,
    }),
)


def site_bytes(fake: Any) -> list[bytes]:
    """Every snapshot request's raw body, with the fake's own address made neutral."""
    with basic_client(fake) as client:
        bodies = [client.get(path, params=params).content for path, params in SNAPSHOT_REQUESTS]
    return [body.replace(fake.base_url.encode(), b"http://fake") for body in bodies]


def test_same_seed_and_clock_serve_identical_bytes(fake_jira_factory: Any) -> None:
    first = fake_jira_factory(issues=120, seed=11, now=FAKE_JIRA_NOW)
    second = fake_jira_factory(issues=120, seed=11, now=FAKE_JIRA_NOW)
    first_bytes, second_bytes = site_bytes(first), site_bytes(second)
    assert all(len(body) > 100 for body in first_bytes)
    for (path, _), a, b in zip(SNAPSHOT_REQUESTS, first_bytes, second_bytes, strict=True):
        assert a == b, f"{path} differs between two fakes with the same seed"


def test_a_fake_repeats_itself_byte_for_byte(read_only_fake: Any) -> None:
    assert site_bytes(read_only_fake) == site_bytes(read_only_fake)


def test_different_seeds_serve_different_sites(fake_jira_factory: Any) -> None:
    first = fake_jira_factory(issues=120, seed=11, now=FAKE_JIRA_NOW)
    other = fake_jira_factory(issues=120, seed=12, now=FAKE_JIRA_NOW)
    first_bytes, other_bytes = site_bytes(first), site_bytes(other)
    differing = [path for (path, _), a, b in
                 zip(SNAPSHOT_REQUESTS, first_bytes, other_bytes, strict=True) if a != b]
    assert "/rest/api/3/search/jql" in differing
    assert "/rest/api/3/users/search" in differing


def test_issues_lie_within_the_configured_days_before_the_clock(read_only_fake: Any) -> None:
    days = read_only_fake.config.days
    for row in read_only_fake.admin.issues():
        updated = parse_jira_datetime(row["updated"])
        assert FAKE_JIRA_NOW.timestamp() - days * 86_400 <= updated.timestamp() <= (
            FAKE_JIRA_NOW.timestamp()
        )


@pytest.fixture
def every_issue_with_discussions(read_only_fake: Any, reader: httpx.Client) -> list[dict]:
    issues, _ = walk_token_pages(reader, "created >= 0", 100, fields="comment,worklog,created")
    assert len(issues) == len(read_only_fake.admin.issues())
    return issues


@pytest.mark.parametrize(
    ("field", "items_key", "page_schema", "item_schema"),
    [
        ("comment", "comments", "PageOfComments", "Comment"),
        ("worklog", "worklogs", "PageOfWorklogs", "Worklog"),
    ],
)
def test_embedded_blocks_are_truncated_as_jira_truncates_them(
    every_issue_with_discussions: list[dict],
    field: str,
    items_key: str,
    page_schema: str,
    item_schema: str,
) -> None:
    truncated = 0
    for issue in every_issue_with_discussions:
        block = issue["fields"][field]
        assert_valid_schema(page_schema, block)
        for item in block[items_key]:
            assert_valid_schema(item_schema, item)
        assert block["startAt"] == 0
        assert len(block[items_key]) == min(block["total"], block["maxResults"])
        truncated += block["total"] > len(block[items_key])
    assert truncated > 0, f"no issue carries a truncated {field} block"


def test_comment_and_worklog_times_follow_creation(
    every_issue_with_discussions: list[dict],
) -> None:
    for issue in every_issue_with_discussions:
        created = parse_jira_datetime(issue["fields"]["created"])
        for comment in issue["fields"]["comment"]["comments"]:
            assert parse_jira_datetime(comment["created"]) >= created
        for worklog in issue["fields"]["worklog"]["worklogs"]:
            assert parse_jira_datetime(worklog["created"]) >= created


def test_changelog_comes_only_with_expand_changelog(reader: httpx.Client) -> None:
    plain, _ = walk_token_pages(reader, "created >= 0", 100, fields="*all", expand="names")
    assert plain and not any("changelog" in issue for issue in plain)
    expanded, _ = walk_token_pages(reader, "created >= 0", 100, fields="key", expand="changelog")
    assert expanded and all("changelog" in issue for issue in expanded)
    assert any(issue["changelog"]["histories"] for issue in expanded)
    for issue in expanded:
        changelog = issue["changelog"]
        assert changelog["total"] >= len(changelog["histories"])
        assert_valid_schema("PageOfChangelogs", changelog)
