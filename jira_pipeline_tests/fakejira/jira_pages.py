"""Walk the fake Jira's collections page by page the way Atlassian documents each endpoint.

Each walker checks every page against the OpenAPI document as it goes, so a test that pages
through a collection also proves every page it saw is a documented body.
"""

from __future__ import annotations

from typing import Any

import httpx

from jira_pipeline_tests.openapi import assert_valid_response, assert_valid_schema

PAGE_LIMIT = 10_000  # a walk that needs more pages than this is looping


def basic_client(fake: Any) -> httpx.Client:
    """An httpx client authenticated as the fake's Cloud user (email + API token)."""
    return httpx.Client(
        base_url=fake.base_url, auth=(fake.config.email, fake.config.api_token), timeout=30
    )


def ok_json(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def walk_offset_pages(
    client: httpx.Client, path: str, page_size: int, params: dict[str, Any] | None = None
) -> tuple[list[dict], list[dict]]:
    """Follow startAt/maxResults/isLast pages (project/search, statuses/search); (values, pages)."""
    values: list[dict] = []
    pages: list[dict] = []
    start_at = 0
    for _ in range(PAGE_LIMIT):
        query = {**(params or {}), "startAt": start_at, "maxResults": page_size}
        page = ok_json(client.get(path, params=query))
        assert_valid_response("GET", path, 200, page)
        assert page["startAt"] == start_at
        pages.append(page)
        values.extend(page["values"])
        if page["isLast"]:
            return values, pages
        assert page["values"], "an empty page that is not the last would loop forever"
        start_at += len(page["values"])
    raise AssertionError(f"{path} never reported isLast")


def walk_array_pages(
    client: httpx.Client, path: str, page_size: int, params: dict[str, Any] | None = None
) -> list[dict]:
    """Follow a bare-array endpoint (users/search): next startAt until a short or empty page."""
    values: list[dict] = []
    for _ in range(PAGE_LIMIT):
        query = {**(params or {}), "startAt": len(values), "maxResults": page_size}
        page = ok_json(client.get(path, params=query))
        if path.startswith("/rest/api/3/"):
            assert_valid_response("GET", path, 200, page)
        assert isinstance(page, list)
        values.extend(page)
        if len(page) < page_size:
            return values
    raise AssertionError(f"{path} never ended")


def walk_token_pages(
    client: httpx.Client,
    jql: str,
    page_size: int | None = None,
    *,
    fields: str | list[str] = "key",
    expand: str | None = None,
    method: str = "GET",
    prefix: str = "",
) -> tuple[list[dict], list[dict]]:
    """Follow search/jql's nextPageToken until isLast; returns (issues, pages)."""
    path = f"{prefix}/rest/api/3/search/jql"
    field_list = fields.split(",") if isinstance(fields, str) else list(fields)
    issues: list[dict] = []
    pages: list[dict] = []
    token: str | None = None
    for _ in range(PAGE_LIMIT):
        request: dict[str, Any] = {"jql": jql, "fields": field_list}
        if page_size is not None:
            request["maxResults"] = page_size
        if expand:
            request["expand"] = expand
        if token:
            request["nextPageToken"] = token
        if method == "GET":  # GET takes the field list comma-separated
            response = client.get(path, params={**request, "fields": ",".join(field_list)})
        else:
            response = client.post(path, json=request)
        page = ok_json(response)
        assert_valid_response(method, "/rest/api/3/search/jql", 200, page)
        pages.append(page)
        issues.extend(page["issues"])
        if page.get("isLast"):
            assert "nextPageToken" not in page
            return issues, pages
        token = page["nextPageToken"]
        assert token, "a page that is not the last must carry nextPageToken"
    raise AssertionError("search/jql never reported isLast")


def search_keys(client: httpx.Client, jql: str, **kwargs: Any) -> list[str]:
    """Keys of every issue matching `jql`, in the order Jira returned them."""
    issues, _ = walk_token_pages(client, jql, 100, **kwargs)
    return [issue["key"] for issue in issues]


def error_messages(response: httpx.Response, status: int) -> list[str]:
    """The errorMessages of a Jira error answer, after checking its status and schema."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    path = response.request.url.path
    if path.startswith("/rest/api/2/"):
        assert_valid_schema("ErrorCollection", body)  # Data Center shares Cloud's error body
    else:
        assert_valid_response(response.request.method, path, status, body)
    return list(body.get("errorMessages", [])) + list(body.get("errors", {}).values())
