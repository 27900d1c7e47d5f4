"""Complete changelogs through the client: bulkfetch batched and paged, Data Center per issue,
and broken paging raised, never looped or ended quietly."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jira_pipeline.jira import BearerPAT, JiraClient, JiraPaginationError, RateLimiter, run_sync
from jira_pipeline.jira.changelogs import changelog_tail, history_document, issue_histories
from jira_pipeline_tests.jira.test_client import FAST_RETRY, basic_client, requests_to
from jira_pipeline_tests.openapi import assert_valid_schema

BULK = "/changelog/bulkfetch"


async def collect(client: JiraClient, ids: list[str], **kwargs: Any) -> list[tuple[str, dict]]:
    async with client:
        return [pair async for pair in issue_histories(client, ids, **kwargs)]


def ids_of(fake: Any) -> list[str]:
    return [row["id"] for row in fake.admin.issues()]


def jira_totals(fake: Any, ids: list[str]) -> dict[str, int]:
    async def totals() -> dict[str, int]:
        async with basic_client(fake) as client:
            found = {}
            for issue_id in ids:
                tail = await changelog_tail(client, issue_id, 0)
                assert tail is not None
                found[issue_id] = tail.total
            return found

    return run_sync(totals())


def test_every_history_comes_once_in_ceil_histories_per_page_requests(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=30, seed=5, histories=(10, 300))
    ids = ids_of(fake)

    pairs = run_sync(collect(basic_client(fake), ids, page_size=400))

    per_issue: dict[str, int] = {}
    for issue_id, _ in pairs:
        per_issue[issue_id] = per_issue.get(issue_id, 0) + 1
    assert per_issue == jira_totals(fake, ids)
    assert len({history["id"] for _, history in pairs}) == len(pairs)
    assert requests_to(fake, BULK, 200) == math.ceil(len(pairs) / 400)


def test_more_than_1000_issues_are_asked_1000_a_call(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=1200, seed=5, days=30)
    ids = ids_of(fake)

    pairs = run_sync(collect(basic_client(fake), ids))

    per_issue: dict[str, int] = {}
    for issue_id, _ in pairs:
        per_issue[issue_id] = per_issue.get(issue_id, 0) + 1
    sample = ids[990:1010]  # both sides of the first call's last issue
    assert {i: per_issue.get(i, 0) for i in sample} == jira_totals(fake, sample)
    # Two calls (1,000 issues, then 200), each paged over its own histories.
    pages = requests_to(fake, BULK, 200)
    assert math.ceil(len(pairs) / 1000) <= pages <= 2 + len(pairs) // 1000


def test_a_token_served_twice_raises_naming_it(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=10, seed=5, histories=(10, 20))
    fake.admin.configure_changelog(glitch_next_page="repeat_token")

    with pytest.raises(JiraPaginationError, match=r"nextPageToken '[^']+' served again"):
        run_sync(collect(basic_client(fake), ids_of(fake), page_size=20))


def test_an_issue_the_call_did_not_ask_for_is_refused(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=10, seed=5, histories=(10, 20))
    ids = ids_of(fake)

    class Lying(JiraClient):
        async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
            body = await super().request_json(method, path, **kwargs)
            body["issueChangeLogs"][0]["issueId"] = "424242"
            return body

    client = Lying(basic_client(fake).auth, fake.base_url, limiter=RateLimiter(0.0, 4),
                   retry=FAST_RETRY)
    with pytest.raises(JiraPaginationError, match="424242, which the call did not ask for"):
        run_sync(collect(client, ids[:3]))


def test_data_center_reads_each_whole_changelog_once_per_issue(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=12, seed=5, histories=(90, 150))
    ids = ids_of(fake)
    client = JiraClient(BearerPAT(fake.config.pat), fake.base_url, deployment="datacenter",
                        limiter=RateLimiter(0.0, 4), retry=FAST_RETRY)

    pairs = run_sync(collect(client, [*ids, "99999"]))  # one id Jira no longer has

    per_issue: dict[str, int] = {}
    for issue_id, _ in pairs:
        per_issue[issue_id] = per_issue.get(issue_id, 0) + 1
    assert set(per_issue) == set(ids) and min(per_issue.values()) >= 90
    assert max(per_issue.values()) > 100  # beyond what Cloud would embed
    assert requests_to(fake, "/rest/api/2/issue/{key}") == len(ids) + 1


def test_history_document_names_the_fields_issue_13_fixes() -> None:
    history = {"id": "7", "created": "2026-01-02T03:04:05.000+0100",
               "author": {"accountId": "abc", "displayName": "A"},
               "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status",
                          "from": "1", "fromString": "To Do", "to": "3",
                          "toString": "In Progress"}]}
    doc = history_document("conn", "10001", "CORE-1", history)
    assert doc == {
        "connection_id": "conn", "issue_id": "10001", "issue_key": "CORE-1", "history_id": "7",
        "author_account_id": "abc", "created": "2026-01-02T03:04:05.000+0100",
        "items": [{"field": "status", "field_id": "status", "field_type": "jira", "from": "1",
                   "from_string": "To Do", "to": "3", "to_string": "In Progress"}],
        "raw": history,
    }


def test_every_bulkfetch_request_is_a_documented_request_body(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=30, seed=5, histories=(10, 100))
    sent: list[Any] = []

    class Recording(JiraClient):
        async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
            sent.append(kwargs.get("json"))
            return await super().request_json(method, path, **kwargs)

    client = Recording(basic_client(fake).auth, fake.base_url, limiter=RateLimiter(0.0, 4),
                       retry=FAST_RETRY)
    pairs = run_sync(collect(client, ids_of(fake), field_ids=["status"], page_size=200))

    assert pairs and len(sent) >= 2
    for body in sent:
        assert_valid_schema("BulkChangelogRequestBean", body)
    assert all(body["fieldIds"] == ["status"] and body["maxResults"] == 200 for body in sent)
    assert "nextPageToken" not in sent[0] and all("nextPageToken" in body for body in sent[1:])
