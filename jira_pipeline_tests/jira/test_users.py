"""JiraClient's user walks against the fake over HTTP: Data Center's inactive users and capped
pages, users fetched one by one, and a walk that would loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jira_pipeline.jira import BearerPAT, JiraClient, RateLimiter, RetryPolicy
from jira_pipeline.jira._exceptions import JiraPaginationError
from jira_pipeline.jira.client import _pages_until_empty
from jira_pipeline.jira.models import UserRecord
from jira_pipeline_tests.jira.test_client import basic_client, requests_to

FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def dc_client(fake: Any) -> JiraClient:
    return JiraClient(BearerPAT(fake.config.pat), fake.base_url, limiter=RateLimiter(0.0, 4),
                      retry=FAST_RETRY)


def test_dc_users_include_the_inactive_and_walk_past_capped_pages(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=250,
                             dc_user_search_cap=100)

    async def scenario() -> list[dict[str, Any]]:
        async with dc_client(fake) as client:
            return [u async for u in client.users()]

    users = asyncio.run(scenario())
    assert sorted(u["key"] for u in users) == sorted(u.key for u in fake.site.data.users)
    assert {u["active"] for u in users} == {True, False}
    assert requests_to(fake, "/rest/api/2/user/search", 200) == 4  # 100, 100, 50, empty


def test_users_are_fetched_one_by_one_by_the_id_issues_hold(fake_jira_factory: Any) -> None:
    dc = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=20)
    cloud = fake_jira_factory(issues=0, projects=1, users=20)
    dc_user, cloud_user = dc.site.data.users[5], cloud.site.data.users[5]

    async def scenario() -> tuple[Any, ...]:
        async with dc_client(dc) as on_dc, basic_client(cloud) as on_cloud:
            return (await on_dc.user(dc_user.key), await on_dc.user(dc_user.name),
                    await on_dc.user("JIRAUSERnobody"), await on_cloud.user(cloud_user.account_id),
                    await on_cloud.user("0" * 24))

    by_key, by_name, dc_missing, by_account, cloud_missing = asyncio.run(scenario())
    assert UserRecord.from_raw(by_key, "c").account_id == dc_user.key
    assert by_name == by_key
    assert by_account["accountId"] == cloud_user.account_id
    assert dc_missing is None and cloud_missing is None


def test_a_user_walk_that_repeats_itself_fails_instead_of_looping() -> None:
    served: list[int] = []

    async def ignores_start_at(paging: dict[str, Any]) -> Any:
        served.append(paging["startAt"])
        return [{"key": "JIRAUSERa"}, {"key": "JIRAUSERb"}]

    async def walk() -> list[dict[str, Any]]:
        return [u async for u in _pages_until_empty(ignores_start_at, 2, where="GET /user/search")]

    with pytest.raises(JiraPaginationError, match="repeats users"):
        asyncio.run(walk())
    assert served == [0, 2]


def test_a_user_listed_twice_across_shifting_pages_is_yielded_once() -> None:
    pages = {0: [{"key": "a"}, {"key": "b"}], 2: [{"key": "b"}, {"key": "c"}], 4: []}

    async def shifting(paging: dict[str, Any]) -> Any:
        return pages[paging["startAt"]]

    async def walk() -> list[str]:
        return [u["key"] async for u in _pages_until_empty(shifting, 2, where="w")]

    assert asyncio.run(walk()) == ["a", "b", "c"]
