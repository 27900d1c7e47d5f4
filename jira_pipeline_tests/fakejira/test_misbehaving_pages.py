"""The fake's search misbehaves on request, as real sites do, and stays documented: one-shot
glitched pages, offset-based nextPageTokens, capped pages, skewed counts; plus the id paging
(`ORDER BY id`, `id > N`) and `POST /issue/bulkfetch` the census relies on."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraAdminError, FakeJiraHandle
from jira_pipeline.fakejira.cli import add_arguments, config_from_args
from jira_pipeline_tests.fakejira.jira_pages import basic_client, error_messages, ok_json
from jira_pipeline_tests.openapi import assert_valid_response

SEARCH = "/rest/api/3/search/jql"
BOUND = "updated >= 0"


def search(client: httpx.Client, jql: str, size: int, token: str | None = None) -> dict:
    request: dict[str, Any] = {"jql": jql, "fields": ["id"], "maxResults": size}
    if token:
        request["nextPageToken"] = token
    page = ok_json(client.post(SEARCH, json=request))
    assert_valid_response("POST", SEARCH, 200, page)
    return page


def ids(page: dict) -> list[int]:
    return [int(issue["id"]) for issue in page["issues"]]


def pat_client(fake: FakeJiraHandle) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url,
                        headers={"Authorization": f"Bearer {fake.config.pat}"})


def test_order_by_id_with_an_id_bound_pages_numerically_across_projects(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(issues=120)
    every = sorted(int(issue["id"]) for issue in fake.admin.issues())
    fake.admin.delete_issue(next(i["key"] for i in fake.admin.issues() if i["id"] == "10040"))
    with basic_client(fake) as client:
        # The bound need not exist any more (10040 was just deleted).
        page = search(client, f"{BOUND} AND id > 10040 ORDER BY id ASC", 30)
    assert ids(page) == [i for i in every if i > 10040][:30]


@pytest.mark.parametrize("glitch", ["no_token", "short"])
def test_a_glitch_hits_the_next_page_with_more_after_it_once(
    fake_jira_factory: Callable[..., FakeJiraHandle], glitch: str
) -> None:
    fake = fake_jira_factory(issues=120)
    jql = f"{BOUND} ORDER BY id ASC"
    with basic_client(fake) as client:
        whole = search(client, jql, 5000)  # the last page: the glitch waits
        fake.admin.configure(glitch_next_page=glitch)
        assert ids(search(client, jql, 5000)) == ids(whole)
        assert whole["isLast"] is True
        first = search(client, jql, 50)
        again = search(client, jql, 50)
    assert first["isLast"] is False
    if glitch == "no_token":
        assert "nextPageToken" not in first and ids(first) == ids(whole)[:50]
    else:
        assert "nextPageToken" in first and ids(first) == ids(whole)[25:50]
    assert ids(again) == ids(whole)[:50] and "nextPageToken" in again  # spent


def test_offset_tokens_skip_an_issue_that_leaves_the_results(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(issues=120, paging="offset")
    jql = f"{BOUND} ORDER BY id ASC"
    with basic_client(fake) as client:
        whole = ids(search(client, jql, 5000))
        first = search(client, jql, 50)
        fake.admin.delete_issue(fake.admin.issues()[0]["key"])  # one of the first page
        second = search(client, jql, 50, first["nextPageToken"])
    # The token remembered an offset: the next page starts one issue too late.
    assert ids(second)[0] == whole[51]


def test_page_cap_and_count_skew(fake_jira_factory: Callable[..., FakeJiraHandle]) -> None:
    fake = fake_jira_factory(issues=120)
    fake.admin.configure(search_page_cap=40, approximate_count_skew=3)
    with basic_client(fake) as client:
        page = search(client, f"{BOUND} ORDER BY id ASC", 5000)
        count = ok_json(client.post("/rest/api/3/search/approximate-count", json={"jql": BOUND}))
    assert (len(page["issues"]), page["isLast"]) == (40, False)
    assert count == {"count": 123}


def test_unknown_knob_values_are_refused(fake_jira_factory: Callable[..., FakeJiraHandle]) -> None:
    fake = fake_jira_factory(issues=10)
    for knobs in ({"glitch_next_page": "sometimes"}, {"paging": "random"},
                  {"search_page_cap": -1}, {"change_after_served": {"key": "NOPE-1"}}):
        with pytest.raises(FakeJiraAdminError):
            fake.admin.configure(**knobs)


def test_bulkfetch_answers_a_documented_body_without_missing_or_hidden_issues(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(issues=60)
    issues = fake.admin.issues()
    hidden_project = issues[0]["project_key"]
    visible = [i for i in issues if i["project_key"] != hidden_project]
    hidden = next(i for i in issues if i["project_key"] == hidden_project)
    gone = visible.pop()
    fake.admin.delete_issue(gone["key"])
    fake.admin.configure(forbidden_projects=[hidden_project])
    asked = [visible[0]["id"], visible[1]["key"], gone["id"], hidden["id"], "99999"]
    with basic_client(fake) as client:
        response = client.post("/rest/api/3/issue/bulkfetch", json={
            "issueIdsOrKeys": asked, "fields": ["summary", "updated"], "expand": ["changelog"]})
        body = ok_json(response)
        too_many = client.post("/rest/api/3/issue/bulkfetch",
                               json={"issueIdsOrKeys": [str(10_000 + n) for n in range(101)]})
    assert_valid_response("POST", "/rest/api/3/issue/bulkfetch", 200, body)
    assert [issue["id"] for issue in body["issues"]] == [visible[0]["id"], visible[1]["id"]]
    assert all("changelog" in issue and "summary" in issue["fields"] for issue in body["issues"])
    assert error_messages(too_many, 400)


def test_datacenter_id_search_without_validation_ignores_missing_ids(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(issues=30, mode="datacenter")
    live = fake.admin.issues()
    jql = f"id in ({live[0]['id']}, 99999) ORDER BY id ASC"
    with pat_client(fake) as client:
        strict = client.post("/rest/api/2/search", json={"jql": jql})
        lenient = ok_json(client.post("/rest/api/2/search",
                                      json={"jql": jql, "validateQuery": False}))
    assert error_messages(strict, 400)
    assert [issue["id"] for issue in lenient["issues"]] == [live[0]["id"]]


def test_paging_flag_makes_cloud_tokens_offset_based() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])).paging == "keyset"
    assert config_from_args(parser.parse_args(["--paging", "offset"])).paging == "offset"
    with pytest.raises(SystemExit):
        parser.parse_args(["--paging", "sometimes"])
