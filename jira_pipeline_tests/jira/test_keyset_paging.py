"""Issue walks page by id (`id > last ORDER BY id`): what Jira does during a walk neither skips
nor repeats an issue, and answers that break the chain fail the walk instead of ending it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.jira import (
    BasicAuth,
    BearerPAT,
    IssueWindow,
    JiraClient,
    RateLimiter,
    RetryPolicy,
    build_issue_jql,
    run_sync,
)
from jira_pipeline.jira._exceptions import JiraBadRequest, JiraPaginationError
from jira_pipeline.jira.pagination import keyset_pages, offset_pages
from jira_pipeline.timeutil import parse_jira_datetime

FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def client_for(fake: FakeJiraHandle) -> JiraClient:
    auth: Any
    if fake.config.mode == "datacenter":
        auth = BearerPAT(fake.config.pat)
    else:
        auth = BasicAuth(fake.config.email, fake.config.api_token)
    return JiraClient(auth, fake.base_url, limiter=RateLimiter(0.0, 4), retry=FAST_RETRY)


def in_window(fake: FakeJiraHandle, window: IssueWindow) -> list[dict[str, Any]]:
    return [
        issue for issue in fake.admin.issues()
        if window.start <= parse_jira_datetime(issue["updated"]) < window.end
    ]


def key_order(issue: dict[str, Any]) -> tuple[str, int]:
    return issue["project_key"], int(issue["key"].rsplit("-", 1)[1])


def window_ids(fake: FakeJiraHandle, window: IssueWindow, page_size: int) -> list[str]:
    async def walk() -> list[str]:
        async with client_for(fake) as client:
            return [
                str(issue["id"])
                async for issue in client.search_window(
                    window, fields=("summary",), page_size=page_size, parallelism=1
                )
            ]

    return run_sync(walk())


def walked_ids(fake: FakeJiraHandle, jql: str) -> list[int]:
    async def walk() -> list[int]:
        async with client_for(fake) as client:
            return [i async for page in client.issue_id_pages(jql) for i in page]

    return run_sync(walk())


def test_editing_during_a_backfill_skips_no_issue(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    # Offset-based nextPageTokens: an issue edited out of the window shifts every later page.
    fake = fake_jira_factory(issues=300, days=30, paging="offset")
    now = fake.admin.now()
    window = IssueWindow(now - timedelta(days=40), now - timedelta(days=1))  # a past window
    before = in_window(fake, window)
    edited = min(before, key=key_order)  # first in key order, early in id order too
    fake.admin.configure(change_after_served={"key": edited["key"], "action": "touch"})

    ids = window_ids(fake, window, page_size=50)

    assert fake.admin.configure()["change_after_served"] is None  # edited during the walk
    assert len(ids) == len(set(ids))
    assert set(ids) == {issue["id"] for issue in before}


@pytest.mark.parametrize("mode", ["cloud", "datacenter"])
def test_an_id_walk_rises_strictly_across_deletes_and_creates(
    fake_jira_factory: Callable[..., FakeJiraHandle], mode: str
) -> None:
    fake = fake_jira_factory(issues=300, days=30, mode=mode)
    by_id = sorted(fake.admin.issues(), key=lambda issue: int(issue["id"]))
    first = by_id[0]  # on the first page: deleting it shifts every offset after it
    fake.admin.configure(
        search_page_cap=40, change_after_served={"key": first["key"], "action": "delete"}
    )
    now = fake.admin.now()
    jql = build_issue_jql(IssueWindow(now - timedelta(days=60), now + timedelta(days=1)))

    ids = walked_ids(fake, jql)

    assert ids == sorted(set(ids))
    assert set(map(str, ids)) == {issue["id"] for issue in by_id}


@pytest.mark.parametrize(
    ("mode", "glitch", "complaint"),
    [
        ("cloud", "no_token", "no nextPageToken"),
        ("datacenter", "no_token", "end early"),
        ("datacenter", "short", "end early"),
    ],
)
def test_a_broken_page_chain_fails_the_walk_naming_the_endpoint(
    fake_jira_factory: Callable[..., FakeJiraHandle], mode: str, glitch: str, complaint: str
) -> None:
    fake = fake_jira_factory(issues=120, days=30, mode=mode)
    fake.admin.configure(search_page_cap=50, glitch_next_page=glitch)
    now = fake.admin.now()
    jql = build_issue_jql(IssueWindow(now - timedelta(days=60), now + timedelta(days=1)))

    with pytest.raises(JiraPaginationError) as raised:
        walked_ids(fake, jql)

    endpoint = "POST /rest/api/3/search/jql" if mode == "cloud" else "POST /rest/api/2/search"
    assert str(raised.value).startswith(endpoint)
    assert complaint in str(raised.value)


@pytest.mark.parametrize("mode", ["cloud", "datacenter"])
def test_issues_by_id_returns_only_those_that_exist(
    fake_jira_factory: Callable[..., FakeJiraHandle], mode: str
) -> None:
    fake = fake_jira_factory(issues=250, days=30, mode=mode)
    issues = sorted(fake.admin.issues(), key=lambda issue: int(issue["id"]))
    gone = issues[3]
    fake.admin.delete_issue(gone["key"])
    asked = [issue["id"] for issue in issues[:230]]  # three requests of at most 100

    async def fetch() -> list[str]:
        async with client_for(fake) as client:
            return [
                str(issue["id"])
                async for batch in client.issues_by_id(asked, ("summary",), ("changelog",))
                for issue in batch.issues
            ]

    before = fake.admin.stats()["requests"]
    found = run_sync(fetch())

    assert sorted(found, key=int) == [i for i in asked if i != gone["id"]]
    after = fake.admin.stats()["requests"]
    endpoint = (
        "POST /rest/api/3/issue/bulkfetch" if mode == "cloud" else "POST /rest/api/2/search"
    )
    assert sum(after[endpoint].values()) - sum(before.get(endpoint, {}).values()) == 3


def test_offset_pages_ending_before_the_stated_total_fail() -> None:
    async def early_end(params: dict[str, Any]) -> dict[str, Any]:
        start = params["startAt"]
        values = [{"id": str(n)} for n in range(start, min(start + 10, 20))]
        return {"startAt": start, "maxResults": 10, "total": 40, "values": values}

    async def walk() -> list[Any]:
        return [item async for page in offset_pages(early_end, page_size=10, where="GET /x")
                for item in page]

    with pytest.raises(JiraPaginationError, match="GET /x: empty page at startAt=20"):
        asyncio.run(walk())


@pytest.mark.parametrize("style", ["token", "offset"])
def test_a_page_anchor_deleted_mid_walk_is_replaced_by_an_earlier_id(style: str) -> None:
    # Real Jira resolves `id > N` to issue N: once N is deleted, Cloud answers nothing and
    # Data Center a 400. The walk asks again from an earlier id of the previous page.
    ids = list(range(100, 130))
    deleted = {109}  # the last id of the first page, deleted before the second is asked

    async def fetch(after: int | None) -> dict[str, Any]:
        if after in deleted:
            if style == "offset":
                raise JiraBadRequest("Bad Request", method="POST", path="/rest/api/2/search",
                                     status=400)
            return {"issues": [], "isLast": True}
        above = [i for i in ids if after is None or i > after]
        page = [{"id": str(i)} for i in above[:10]]
        if style == "offset":
            return {"startAt": 0, "maxResults": 10, "total": len(above), "issues": page}
        more = len(above) > 10
        return {"issues": page, "isLast": not more, **({"nextPageToken": "t"} if more else {})}

    async def walk() -> list[int]:
        return [int(item["id"]) async for page in keyset_pages(
            fetch, page_size=10, style=style, where="POST /search") for item in page]  # type: ignore[arg-type]

    assert asyncio.run(walk()) == ids
