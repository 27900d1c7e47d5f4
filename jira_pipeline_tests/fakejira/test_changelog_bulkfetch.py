"""`POST /changelog/bulkfetch` and the paged `/issue/{id}/changelog`, as the OpenAPI document
defines them, over the `histories` knob's many histories per issue."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraConfig, FakeJiraHandle, run_fake_jira
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import basic_client, error_messages, ok_json
from jira_pipeline_tests.openapi import assert_valid_response

BULK = "/rest/api/3/changelog/bulkfetch"


@pytest.fixture(scope="module")
def busy_fake() -> Iterator[FakeJiraHandle]:
    """40 issues with 10 to 300 histories each (shared: the tests here only read)."""
    config = FakeJiraConfig(issues=40, seed=3, now=FAKE_JIRA_NOW, histories=(10, 300))
    with run_fake_jira(config) as fake:
        yield fake


@pytest.fixture(scope="module")
def busy(busy_fake: FakeJiraHandle) -> Iterator[httpx.Client]:
    with basic_client(busy_fake) as client:
        yield client


def issue_ids(fake: FakeJiraHandle) -> list[str]:
    return [row["id"] for row in fake.admin.issues()]


def walk_bulkfetch(
    client: httpx.Client, body: dict[str, Any], pages_seen: list[list[tuple[str, dict]]] | None
    = None
) -> tuple[list[tuple[str, dict]], int]:
    """Every (issue id, history) of a bulkfetch call in the order served, and the pages it took
    (each page's pairs appended to `pages_seen`); each page is checked against the document."""
    request = dict(body)
    served: list[tuple[str, dict]] = []
    for pages in range(1, 10_000):
        page = ok_json(client.post(BULK, json=request))
        assert_valid_response("POST", BULK, 200, page)
        this_page = [(block["issueId"], history) for block in page["issueChangeLogs"]
                     for history in block["changeHistories"]]
        served.extend(this_page)
        if pages_seen is not None:
            pages_seen.append(this_page)
        if "nextPageToken" not in page:
            return served, pages
        assert page["nextPageToken"] != request.get("nextPageToken"), "the token repeated"
        request["nextPageToken"] = page["nextPageToken"]
    raise AssertionError("bulkfetch never ended")


def changelog_total(client: httpx.Client, issue_id: str) -> int:
    return int(ok_json(client.get(f"/rest/api/3/issue/{issue_id}/changelog",
                                  params={"maxResults": 1}))["total"])


def test_bulkfetch_serves_every_history_of_the_call_once_oldest_first(
    busy: httpx.Client, busy_fake: FakeJiraHandle
) -> None:
    ids = issue_ids(busy_fake)
    by_page: list[list[tuple[str, dict]]] = []
    served, pages = walk_bulkfetch(busy, {"issueIdsOrKeys": ids, "maxResults": 700}, by_page)

    history_ids = [history["id"] for _, history in served]
    assert len(history_ids) == len(set(history_ids)), "a history was served twice"
    per_issue: dict[str, int] = {}
    for issue_id, _ in served:
        per_issue[issue_id] = per_issue.get(issue_id, 0) + 1
    # Complete: each issue's count is Jira's total for its own paged changelog.
    assert per_issue == {issue_id: changelog_total(busy, issue_id) for issue_id in ids}
    assert all(10 <= count <= 300 for count in per_issue.values())
    assert pages == -(-len(served) // 700)  # full pages of maxResults but the last
    # A page holds the call's next 700 histories (oldest first, then by issue id), grouped by
    # issue: every page's histories are older than the next page's.
    keyed = [[(parse_jira_datetime(history["created"]), int(issue_id)) for issue_id, history
              in page] for page in by_page]
    assert all(max(page) <= min(later) for page, later in pairwise(keyed))
    for page in keyed:
        for number in {issue for _, issue in page}:
            own = [key for key in page if key[1] == number]
            assert own == sorted(own)


def test_bulkfetch_default_page_is_1000_histories(busy: httpx.Client,
                                                  busy_fake: FakeJiraHandle) -> None:
    page = ok_json(busy.post(BULK, json={"issueIdsOrKeys": issue_ids(busy_fake)}))
    assert sum(len(block["changeHistories"]) for block in page["issueChangeLogs"]) == 1000
    assert page["nextPageToken"]


def test_bulkfetch_field_ids_keep_only_those_fields_changes(
    busy: httpx.Client, busy_fake: FakeJiraHandle
) -> None:
    ids = issue_ids(busy_fake)[:10]
    everything, _ = walk_bulkfetch(busy, {"issueIdsOrKeys": ids})
    summaries, _ = walk_bulkfetch(busy, {"issueIdsOrKeys": ids, "fieldIds": ["summary"]})

    assert summaries and all(item["fieldId"] == "summary"
                             for _, history in summaries for item in history["items"])
    expected = [history["id"] for _, history in everything
                if any(item["fieldId"] == "summary" for item in history["items"])]
    assert sorted(history["id"] for _, history in summaries) == sorted(expected)


def test_bulkfetch_leaves_out_issues_that_do_not_exist(busy: httpx.Client,
                                                       busy_fake: FakeJiraHandle) -> None:
    first = issue_ids(busy_fake)[0]
    served, _ = walk_bulkfetch(busy, {"issueIdsOrKeys": [first, "99999999", "NOPE-1"]})
    assert served and {issue_id for issue_id, _ in served} == {first}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"issueIdsOrKeys": []}, "issueIdsOrKeys"),
        ({"issueIdsOrKeys": [str(10_000 + n) for n in range(1001)]}, "1000"),
        ({"issueIdsOrKeys": ["10000"], "fieldIds": [f"f{n}" for n in range(11)]}, "10"),
        ({"issueIdsOrKeys": ["10000"], "maxResults": 0}, "maxResults"),
        ({"issueIdsOrKeys": ["10000"], "maxResults": 10_001}, "maxResults"),
        ({"issueIdsOrKeys": ["10000"], "nextPageToken": "garbage"}, "nextPageToken"),
        ({"issueIdsOrKeys": ["10000"], "expand": ["x"]}, "expand"),
    ],
)
def test_bulkfetch_refuses_what_the_document_forbids(
    busy: httpx.Client, body: dict[str, Any], says: str
) -> None:
    messages = error_messages(busy.post(BULK, json=body), 400)
    assert any(says in message for message in messages), messages


def test_a_token_pages_only_its_own_call(busy: httpx.Client, busy_fake: FakeJiraHandle) -> None:
    ids = issue_ids(busy_fake)
    token = ok_json(busy.post(BULK, json={"issueIdsOrKeys": ids}))["nextPageToken"]
    other = busy.post(BULK, json={"issueIdsOrKeys": ids[:5], "nextPageToken": token})
    assert any("does not belong" in message for message in error_messages(other, 400))


def test_issue_changelog_pages_by_100_beyond_100_histories(
    busy: httpx.Client, busy_fake: FakeJiraHandle
) -> None:
    long = next(i for i in issue_ids(busy_fake) if changelog_total(busy, i) > 100)
    values: list[dict] = []
    path = f"/rest/api/3/issue/{long}/changelog"
    while True:
        page = ok_json(busy.get(path, params={"startAt": len(values), "maxResults": 500}))
        assert_valid_response("GET", path, 200, page)
        assert page["maxResults"] == 100  # Jira's cap, whatever was asked
        values.extend(page["values"])
        if page["isLast"]:
            break
        assert page["nextPage"]
    assert len(values) == page["total"] > 100
    assert len({history["id"] for history in values}) == len(values)


def test_embedded_changelog_stays_truncated_in_cloud_and_whole_in_data_center(
    busy: httpx.Client, busy_fake: FakeJiraHandle, fake_jira_factory: Any
) -> None:
    long = next(i for i in issue_ids(busy_fake) if changelog_total(busy, i) > 100)
    embedded = ok_json(busy.get(f"/rest/api/3/issue/{long}",
                                params={"fields": "summary", "expand": "changelog"}))["changelog"]
    assert len(embedded["histories"]) == 100 < embedded["total"]

    dc = fake_jira_factory(mode="datacenter", issues=40, seed=3, histories=(10, 300))
    headers = {"Authorization": f"Bearer {dc.config.pat}"}
    with httpx.Client(base_url=dc.base_url, headers=headers) as client:
        whole = ok_json(client.get(f"/rest/api/2/issue/{long}",
                                   params={"fields": "summary", "expand": "changelog"}))
        assert client.post("/rest/api/2/changelog/bulkfetch",
                           json={"issueIdsOrKeys": [long]}).status_code == 404
    assert len(whole["changelog"]["histories"]) == whole["changelog"]["total"] > 100
    assert_valid_response("GET", "/rest/api/3/issue/{issueIdOrKey}", 200, whole)


def test_generated_histories_end_at_the_issue_as_served(busy: httpx.Client,
                                                        busy_fake: FakeJiraHandle) -> None:
    for issue_id in issue_ids(busy_fake)[:10]:
        served, _ = walk_bulkfetch(busy, {"issueIdsOrKeys": [issue_id]})
        issue = ok_json(busy.get(f"/rest/api/3/issue/{issue_id}",
                                 params={"fields": "status,summary,created,updated"}))
        last: dict[str, dict] = {}
        for _, history in served:
            for item in history["items"]:
                last[item["fieldId"]] = item
        if "status" in last:
            assert last["status"]["to"] == issue["fields"]["status"]["id"]
        if "summary" in last:
            assert last["summary"]["toString"] == issue["fields"]["summary"]
        created = parse_jira_datetime(issue["fields"]["created"])
        updated = parse_jira_datetime(issue["fields"]["updated"])
        assert all(created <= parse_jira_datetime(h["created"]) <= updated for _, h in served)


def test_histories_added_during_a_walk_come_at_its_end(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=20, seed=3, histories=(10, 40))
    ids = [row["id"] for row in fake.admin.issues()]
    keys = {row["id"]: row["key"] for row in fake.admin.issues()}
    with basic_client(fake) as client:
        first = ok_json(client.post(BULK, json={"issueIdsOrKeys": ids, "maxResults": 50}))
        fake.admin.touch_issue(keys[ids[0]], {"summary": "edited during the walk"})
        rest, _ = walk_bulkfetch(client, {"issueIdsOrKeys": ids, "maxResults": 50,
                                          "nextPageToken": first["nextPageToken"]})
        before = [h["id"] for block in first["issueChangeLogs"] for h in block["changeHistories"]]
        served = before + [history["id"] for _, history in rest]
        assert len(served) == len(set(served)) == sum(changelog_total(client, i) for i in ids)
        assert rest[-1][0] == ids[0] and rest[-1][1]["items"][0]["toString"] == \
            "edited during the walk"


@pytest.mark.parametrize("glitch", ["no_token", "short", "repeat_token"])
def test_changelog_glitches_are_one_shot(fake_jira_factory: Any, glitch: str) -> None:
    fake = fake_jira_factory(issues=10, seed=3, histories=(10, 20))
    ids = [row["id"] for row in fake.admin.issues()]
    with basic_client(fake) as client:
        honest, honest_pages = walk_bulkfetch(client, {"issueIdsOrKeys": ids, "maxResults": 30})
        knobs = ok_json(client.post(f"{fake.base_url}/_fake/changelog",
                                    json={"glitch_next_page": glitch}))
        assert knobs == {"glitch_next_page": glitch, "page_cap": 0}
        request: dict[str, Any] = {"issueIdsOrKeys": ids, "maxResults": 30}
        first = ok_json(client.post(BULK, json=request))
        served = [h["id"] for block in first["issueChangeLogs"] for h in block["changeHistories"]]
        if glitch == "no_token":
            assert "nextPageToken" not in first and len(served) == 30 < len(honest)
        elif glitch == "short":
            assert len(served) == 15 and first["nextPageToken"]
        else:
            second = ok_json(client.post(BULK, json={**request,
                                                     "nextPageToken": first["nextPageToken"]}))
            assert second["nextPageToken"] == first["nextPageToken"]
        # Spent: the next walk is honest again.
        again, pages = walk_bulkfetch(client, {"issueIdsOrKeys": ids, "maxResults": 30})
        assert again == honest and pages == honest_pages


def test_page_cap_serves_fewer_histories_than_asked(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=5, seed=3, histories=(10, 20))
    ids = [row["id"] for row in fake.admin.issues()]
    with basic_client(fake) as client:
        ok_json(client.post(f"{fake.base_url}/_fake/changelog", json={"page_cap": 7}))
        served, pages = walk_bulkfetch(client, {"issueIdsOrKeys": ids})
        assert pages == -(-len(served) // 7) > 1
        refused = client.post(f"{fake.base_url}/_fake/changelog", json={"glitch_next_page": "x"})
        assert refused.status_code == 400 and "glitch_next_page" in refused.text
