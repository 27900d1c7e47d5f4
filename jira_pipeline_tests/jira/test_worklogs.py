"""The worklog feed client against the fake Jira over HTTP: feeds paged by nextPage, lists
of 1,000 ids, one issue's worklogs on Data Center, and feeds that would loop."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from jira_pipeline.jira import (
    BasicAuth,
    BearerPAT,
    JiraClient,
    JiraPaginationError,
    RateLimiter,
    RetryPolicy,
)
from jira_pipeline.jira.worklogs import changed_worklogs, issue_worklogs, worklogs_by_id

FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def cloud_client(fake: Any, **kwargs: Any) -> JiraClient:
    return JiraClient(BasicAuth(fake.config.email, fake.config.api_token), fake.base_url,
                      limiter=RateLimiter(0.0, 4), retry=FAST_RETRY, **kwargs)


def requests_to(fake: Any, suffix: str) -> int:
    return sum(sum(by_status.values()) for endpoint, by_status in
               fake.admin.stats()["requests"].items() if endpoint.endswith(suffix))


async def feed(client: JiraClient, name: Any, since: int = 0) -> tuple[dict[str, int], int]:
    changes: dict[str, int] = {}
    pages = 0
    async for page in changed_worklogs(client, name, since):
        pages += 1
        changes.update(page.changes)
    return changes, pages


def test_the_updated_feed_and_list_bring_every_worklog_of_the_site(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=1200, seed=3)
    expected = {w["id"]: w["timeSpentSeconds"] for issue in fake.admin.issues()
                for w in fake.admin.worklogs(issue["key"])}
    assert len(expected) > 1000

    async def run() -> tuple[dict[str, int], int, dict[str, int]]:
        async with cloud_client(fake) as client:
            changes, pages = await feed(client, "updated")
            listed = {w["id"]: w["timeSpentSeconds"]
                      async for page in worklogs_by_id(client, list(changes)) for w in page}
        return changes, pages, listed

    changes, pages, listed = asyncio.run(run())
    assert set(changes) == set(expected)
    assert pages == requests_to(fake, "/rest/api/3/worklog/updated") >= 2
    assert listed == expected
    assert requests_to(fake, "/rest/api/3/worklog/list") == -(-len(expected) // 1000)


def test_the_deleted_feed_lists_a_deletion_once_a_minute_has_passed(fake_jira: Any) -> None:
    issue = next(i for i in fake_jira.admin.issues() if fake_jira.admin.worklogs(i["key"]))
    worklog = fake_jira.admin.worklogs(issue["key"])[0]
    fake_jira.admin.delete_worklog(worklog["id"])

    async def deleted() -> dict[str, int]:
        async with cloud_client(fake_jira) as client:
            return (await feed(client, "deleted"))[0]

    assert asyncio.run(deleted()) == {}
    fake_jira.admin.advance_clock(61)
    assert list(asyncio.run(deleted())) == [worklog["id"]]


def test_data_center_pages_one_issues_worklogs(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=150, mode="datacenter")
    issue = max(fake.admin.issues(), key=lambda i: len(fake.admin.worklogs(i["key"])))
    expected = [w["id"] for w in fake.admin.worklogs(issue["key"])]

    async def run() -> list[dict[str, Any]]:
        async with JiraClient(BearerPAT(fake.config.pat), fake.base_url,
                              limiter=RateLimiter(0.0, 4), retry=FAST_RETRY) as client:
            return [w async for w in issue_worklogs(client, issue["id"])]

    got = asyncio.run(run())
    assert [w["id"] for w in got] == expected
    assert all(w["author"].get("key") for w in got), "Data Center names users by key"


def misbehaving_feed(next_since: int | None) -> httpx.MockTransport:
    """A feed server whose every page says more follows, at `next_since` (a broken server:
    what the fake never does, hence a transport standing in for it)."""

    def answer(request: httpx.Request) -> httpx.Response:
        since = int(request.url.params.get("since", "0"))
        body: dict[str, Any] = {"since": since, "until": since, "lastPage": False,
                                "values": [{"worklogId": 1, "updatedTime": since}]}
        if next_since is not None:
            body["nextPage"] = f"https://jira.example/rest/api/3/worklog/updated?since={next_since}"
        return httpx.Response(200, content=orjson.dumps(body),
                              headers={"content-type": "application/json"})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(("next_since", "message"), [
    (5, "does not move past since=5"),
    (None, "nextPage has no `since`"),
])
def test_a_feed_whose_next_page_does_not_advance_fails_instead_of_looping(
    next_since: int | None, message: str
) -> None:
    async def run() -> None:
        async with JiraClient(BasicAuth("a@b.c", "t"), "https://jira.example",
                              limiter=RateLimiter(0.0, 4), retry=FAST_RETRY,
                              transport=misbehaving_feed(next_since)) as client:
            async for _ in changed_worklogs(client, "updated", 5):
                pass

    with pytest.raises(JiraPaginationError, match=message):
        asyncio.run(run())
