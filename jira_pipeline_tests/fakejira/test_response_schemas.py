"""Every fake Jira answer, success or error, is a body Atlassian's OpenAPI document allows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    error_messages,
    ok_json,
    walk_token_pages,
)
from jira_pipeline_tests.openapi import assert_valid_response


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/rest/api/3/myself", {}),
        ("/rest/api/3/serverInfo", {}),
        ("/rest/api/3/project/search", {"maxResults": 2}),
        ("/rest/api/3/project/search", {"expand": "description,lead,insight"}),
        ("/rest/api/3/statuses/search", {}),
        ("/rest/api/3/status", {}),
        ("/rest/api/3/users/search", {"maxResults": 1000}),
        ("/rest/api/3/field", {}),
        ("/rest/api/3/issuetype", {}),
        ("/rest/api/3/priority/search", {"maxResults": 2}),
        ("/rest/api/3/priority", {}),
        ("/rest/api/3/resolution/search", {"maxResults": 2}),
        ("/rest/api/3/resolution", {}),
        ("/rest/api/3/statuscategory", {}),
        ("/rest/api/3/project/CORE/version", {"maxResults": 2, "orderBy": "-releaseDate"}),
        ("/rest/api/3/project/CORE/versions", {}),
        ("/rest/api/3/project/WEB/component", {"maxResults": 2}),
        ("/rest/api/3/project/WEB/components", {}),
        ("/rest/api/3/component", {"projectIdsOrKeys": ["CORE", "WEB"], "maxResults": 4}),
        ("/rest/api/3/issueLinkType", {}),
    ],
)
def test_get_endpoint_answers_documented_body(
    reader: httpx.Client, path: str, params: dict[str, Any]
) -> None:
    body = ok_json(reader.get(path, params=params))
    assert body, f"{path} answered an empty body"
    assert_valid_response("GET", path, 200, body)


def test_myself_reports_the_configured_time_zone(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, user_timezone="Pacific/Tongatapu")
    with basic_client(fake) as client:
        me = ok_json(client.get("/rest/api/3/myself"))
    assert_valid_response("GET", "/rest/api/3/myself", 200, me)
    assert me["timeZone"] == "Pacific/Tongatapu"
    assert me["emailAddress"] == fake.config.email


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_search_with_all_fields_and_expansions_is_documented(
    reader: httpx.Client, read_only_fake: Any, method: str
) -> None:
    projects = ", ".join(sorted({issue["project_key"] for issue in read_only_fake.admin.issues()}))
    issues, pages = walk_token_pages(
        reader,
        f"project in ({projects}) ORDER BY key",
        100,
        fields="*all",
        expand="changelog,names,renderedFields",
        method=method,
    )
    assert len(issues) == len(read_only_fake.admin.issues())
    assert all("names" in page for page in pages)
    assert all({"id", "key", "fields", "changelog"} <= issue.keys() for issue in issues)


def test_approximate_count_is_documented(reader: httpx.Client, read_only_fake: Any) -> None:
    project = read_only_fake.admin.issues()[0]["project_key"]
    body = ok_json(
        reader.post("/rest/api/3/search/approximate-count", json={"jql": f"project = {project}"})
    )
    assert_valid_response("POST", "/rest/api/3/search/approximate-count", 200, body)
    expected = sum(1 for i in read_only_fake.admin.issues() if i["project_key"] == project)
    assert body["count"] == expected


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/rest/api/3/search/jql", {"params": {"jql": "project = = X"}}),
        ("POST", "/rest/api/3/search/jql", {"json": {"jql": "updated >> 5"}}),
        ("POST", "/rest/api/3/search/approximate-count", {"json": {"jql": "project in (A"}}),
    ],
)
def test_bad_jql_answers_400_error_collection(
    reader: httpx.Client, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    messages = error_messages(reader.request(method, path, **kwargs), 400)
    assert messages and all(isinstance(m, str) and m for m in messages)


@pytest.mark.parametrize(
    "path",
    [
        "/rest/api/3/myself",
        "/rest/api/3/project/search",
        "/rest/api/3/statuses/search",
        "/rest/api/3/users/search",
        "/rest/api/3/field",
    ],
)
def test_missing_credentials_answer_401_error_collection(read_only_fake: Any, path: str) -> None:
    with httpx.Client(base_url=read_only_fake.base_url) as anonymous:
        assert error_messages(anonymous.get(path), 401)


def test_wrong_api_token_answers_401_error_collection(read_only_fake: Any) -> None:
    auth = (read_only_fake.config.email, "nope")
    with httpx.Client(base_url=read_only_fake.base_url, auth=auth) as c:
        assert error_messages(c.get("/rest/api/3/search/jql", params={"jql": "project = X"}), 401)


def test_forbidden_project_answers_403_error_collection(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=20, forbidden_projects=("WEB",))
    with basic_client(fake) as client:
        assert error_messages(client.get("/rest/api/3/project/WEB"), 403)


def test_unknown_project_answers_404_error_collection(reader: httpx.Client) -> None:
    assert error_messages(reader.get("/rest/api/3/project/NOSUCH"), 404)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_removed_search_endpoint_answers_410_error_collection(
    reader: httpx.Client, method: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"jql": "project = CORE"}} if method == "POST" else {}
    assert error_messages(reader.request(method, "/rest/api/3/search", **kwargs), 410)


def test_garbage_next_page_token_answers_400(reader: httpx.Client) -> None:
    response = reader.get("/rest/api/3/search/jql",
                          params={"jql": "created >= 0", "nextPageToken": "not-a-token"})
    assert error_messages(response, 400)


def test_non_numeric_page_size_answers_400(reader: httpx.Client) -> None:
    response = reader.get("/rest/api/3/project/search", params={"maxResults": "lots"})
    assert error_messages(response, 400)


# Data Center's /rest/api/2 answers share Cloud v3's shapes for these resources (Cloud's own
# document is the only one we hold), so each is checked against its v3 twin.
@pytest.mark.parametrize(
    ("v2_path", "v3_twin", "params"),
    [
        ("/rest/api/2/myself", "/rest/api/3/myself", {}),
        ("/rest/api/2/serverInfo", "/rest/api/3/serverInfo", {}),
        ("/rest/api/2/project", "/rest/api/3/project", {}),
        ("/rest/api/2/status", "/rest/api/3/status", {}),
        ("/rest/api/2/user/search", "/rest/api/3/user/search",
         {"username": ".", "maxResults": 1000}),
        ("/rest/api/2/field", "/rest/api/3/field", {}),
        ("/rest/api/2/issuetype", "/rest/api/3/issuetype", {}),
        ("/rest/api/2/priority", "/rest/api/3/priority", {}),
        ("/rest/api/2/resolution", "/rest/api/3/resolution", {}),
        ("/rest/api/2/statuscategory", "/rest/api/3/statuscategory", {}),
        ("/rest/api/2/project/CORE/versions", "/rest/api/3/project/CORE/versions", {}),
        ("/rest/api/2/project/CORE/version", "/rest/api/3/project/CORE/version",
         {"maxResults": 2}),
        ("/rest/api/2/project/WEB/components", "/rest/api/3/project/WEB/components", {}),
        ("/rest/api/2/issueLinkType", "/rest/api/3/issueLinkType", {}),
        ("/rest/api/2/search", "/rest/api/3/search",
         {"jql": "created >= 0", "fields": "*all", "expand": "changelog", "maxResults": 1000}),
    ],
)
def test_datacenter_answers_match_their_cloud_twins(
    fake_jira_factory: Any, v2_path: str, v3_twin: str, params: dict[str, Any]
) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=40, projects=2, users=20)
    headers = {"Authorization": f"Bearer {fake.config.pat}"}
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        body = ok_json(client.get(v2_path, params=params))
    assert body
    assert_valid_response("GET", v3_twin, 200, body)
