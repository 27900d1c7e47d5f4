"""Paging any collection of the fake Jira to its end yields every record exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraConfig, FakeJiraHandle, run_fake_jira
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    ok_json,
    walk_array_pages,
    walk_offset_pages,
    walk_token_pages,
)


def assert_each_once(ids: list[str], expected: set[str]) -> None:
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    assert not repeated, f"served more than once: {repeated[:10]}"
    assert set(ids) == expected, (
        f"missing {sorted(expected - set(ids))[:10]}, unexpected {sorted(set(ids) - expected)[:10]}"
    )


def all_project_clause(fake: Any) -> str:
    keys = sorted({issue["project_key"] for issue in fake.admin.issues()})
    return f"project in ({', '.join(keys)})"


@pytest.fixture(scope="module")
def paged_fake() -> Iterator[FakeJiraHandle]:
    """More projects than one page of 5 and statuses beyond one page of 7; only read."""
    config = FakeJiraConfig(projects=12, users=120, issues=150, seed=3, now=FAKE_JIRA_NOW)
    with run_fake_jira(config) as fake:
        yield fake


@pytest.fixture(scope="module")
def datacenter_fake() -> Iterator[FakeJiraHandle]:
    config = FakeJiraConfig(mode="datacenter", issues=120, projects=3, now=FAKE_JIRA_NOW)
    with run_fake_jira(config) as fake:
        yield fake


@pytest.mark.parametrize("page_size", [1, 2, 5, 50])
def test_project_search_pages_cover_every_project_once(
    paged_fake: Any, page_size: int
) -> None:
    with basic_client(paged_fake) as client:
        projects, pages = walk_offset_pages(client, "/rest/api/3/project/search", page_size)
    assert len(projects) == paged_fake.config.projects
    assert_each_once([p["id"] for p in projects], {p["id"] for p in projects})
    assert all(page["total"] == paged_fake.config.projects for page in pages)
    assert all(page["maxResults"] == page_size for page in pages)
    assert [page["isLast"] for page in pages] == [False] * (len(pages) - 1) + [True]
    assert all(("nextPage" in page) != page["isLast"] for page in pages)


@pytest.mark.parametrize("path", ["/rest/api/3/project/search", "/rest/api/3/statuses/search"])
def test_following_next_page_links_walks_the_same_records(paged_fake: Any, path: str) -> None:
    with basic_client(paged_fake) as client:
        by_offset, _ = walk_offset_pages(client, path, 3)
        followed: list[dict] = []
        url = f"{paged_fake.base_url}{path}?maxResults=3"
        while True:
            page = ok_json(client.get(url))
            followed.extend(page["values"])
            if page["isLast"]:
                break
            url = page["nextPage"]
            assert url.startswith(paged_fake.base_url), "nextPage must be an absolute URL here"
    assert [v["id"] for v in followed] == [v["id"] for v in by_offset]


def test_project_search_caps_page_size_at_fifty(paged_fake: Any) -> None:
    with basic_client(paged_fake) as client:
        page = ok_json(client.get("/rest/api/3/project/search", params={"maxResults": 500}))
    assert page["maxResults"] == 50


@pytest.mark.parametrize("page_size", [1, 2, 7, 200])
def test_statuses_search_pages_cover_every_status_once(paged_fake: Any, page_size: int) -> None:
    with basic_client(paged_fake) as client:
        flat = ok_json(client.get("/rest/api/3/status"))
        statuses, pages = walk_offset_pages(client, "/rest/api/3/statuses/search", page_size)
    assert_each_once([s["id"] for s in statuses], {s["id"] for s in flat})
    assert all(page["total"] == len(flat) for page in pages)


@pytest.mark.parametrize("page_size", [1, 7, 50, 1000])
def test_users_search_pages_cover_every_user_once(paged_fake: Any, page_size: int) -> None:
    with basic_client(paged_fake) as client:
        users = walk_array_pages(client, "/rest/api/3/users/search", page_size)
    assert len(users) == paged_fake.config.users
    assert_each_once([u["accountId"] for u in users], {u["accountId"] for u in users})
    # users/search lists everybody: people who left and app accounts too.
    assert {u["active"] for u in users} == {True, False}
    assert {"atlassian", "app"} <= {u["accountType"] for u in users}


def test_users_search_caps_page_size_at_a_thousand(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(users=1100, issues=0, projects=1)
    with basic_client(fake) as client:
        page = ok_json(client.get("/rest/api/3/users/search", params={"maxResults": 5000}))
        users = walk_array_pages(client, "/rest/api/3/users/search", 1000)
    assert len(page) == 1000
    assert len(users) == 1100


@pytest.mark.parametrize(
    ("page_size", "fields", "method"),
    [
        (1, "key", "GET"),
        (7, "key,updated", "POST"),
        (50, "*all", "GET"),
        (100, "*all", "POST"),
        (None, "summary", "GET"),  # Jira's default page size
        (5000, "id", "GET"),
        (5000, "key", "POST"),
    ],
)
def test_search_jql_pages_cover_every_issue_once(
    read_only_fake: Any, reader: httpx.Client, page_size: int | None, fields: str, method: str
) -> None:
    issues, pages = walk_token_pages(
        reader, f"{all_project_clause(read_only_fake)} ORDER BY updated DESC", page_size,
        fields=fields, method=method,
    )
    assert_each_once([i["key"] for i in issues], {i["key"] for i in read_only_fake.admin.issues()})
    full_page = {None: 50, 5000: len(issues)}.get(page_size, page_size)
    assert all(len(page["issues"]) == full_page for page in pages[:-1])


def test_search_jql_caps_full_issue_pages_at_a_hundred(
    read_only_fake: Any, reader: httpx.Client
) -> None:
    jql = all_project_clause(read_only_fake)
    issues, pages = walk_token_pages(reader, jql, 1000, fields="*all")
    assert len(pages[0]["issues"]) == 100
    assert_each_once([i["key"] for i in issues], {i["key"] for i in read_only_fake.admin.issues()})


@pytest.mark.parametrize("page_size", [1, 50, 1000])
def test_datacenter_search_pages_by_start_at_cover_every_issue_once(
    datacenter_fake: FakeJiraHandle, page_size: int
) -> None:
    fake = datacenter_fake
    headers = {"Authorization": f"Bearer {fake.config.pat}"}
    keys: list[str] = []
    totals = set()
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        jql = f"{all_project_clause(fake)} ORDER BY key"
        while True:
            page = ok_json(client.get("/rest/api/2/search", params={
                "jql": jql, "startAt": len(keys), "maxResults": page_size, "fields": "updated"}))
            assert page["startAt"] == len(keys)
            totals.add(page["total"])
            keys.extend(issue["key"] for issue in page["issues"])
            if not page["issues"] or len(keys) >= page["total"]:
                break
    assert totals == {120}
    assert_each_once(keys, {i["key"] for i in fake.admin.issues()})
