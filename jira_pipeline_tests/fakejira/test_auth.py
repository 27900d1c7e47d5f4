"""The fake Jira authenticates as Jira does: API-token basic auth, Data Center PAT, OAuth 3LO."""

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
from jira_pipeline_tests.fakejira.oauth_flow import (
    REDIRECT_URI,
    authorize,
    bearer,
    exchange_code,
    token_request,
)
from jira_pipeline_tests.openapi import assert_valid_response

# --- Cloud: email + API token ------------------------------------------------------------


def test_basic_auth_with_api_token_is_accepted(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        me = ok_json(client.get("/rest/api/3/myself"))
    assert me["emailAddress"] == fake_jira.config.email


@pytest.mark.parametrize(
    "auth",
    [
        ("demo@example.com", "wrong-token"),
        ("someone-else@example.com", "demo-token"),
        ("demo@example.com", ""),
    ],
)
def test_wrong_basic_credentials_answer_401(fake_jira: Any, auth: tuple[str, str]) -> None:
    with httpx.Client(base_url=fake_jira.base_url, auth=auth) as client:
        assert error_messages(client.get("/rest/api/3/myself"), 401)


def test_missing_credentials_answer_401(fake_jira: Any) -> None:
    with httpx.Client(base_url=fake_jira.base_url) as client:
        assert error_messages(client.get("/rest/api/3/serverInfo"), 401)


def test_unknown_bearer_token_answers_401_in_cloud_mode(fake_jira: Any) -> None:
    headers = {"Authorization": "Bearer not-a-token"}
    with httpx.Client(base_url=fake_jira.base_url, headers=headers) as client:
        assert error_messages(client.get("/rest/api/3/myself"), 401)


def test_error_body_never_echoes_the_secret(fake_jira: Any) -> None:
    with httpx.Client(base_url=fake_jira.base_url, auth=("demo@example.com", "s3cr3t-x")) as c:
        response = c.get("/rest/api/3/myself")
    assert response.status_code == 401
    assert "s3cr3t-x" not in response.text


# --- Data Center: personal access token ------------------------------------------------


@pytest.fixture
def datacenter(fake_jira_factory: Any) -> Any:
    return fake_jira_factory(mode="datacenter", issues=60, projects=3)


def pat_client(fake: Any, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or fake.config.pat}"}
    return httpx.Client(base_url=fake.base_url, headers=headers)


def test_datacenter_accepts_a_personal_access_token(datacenter: Any) -> None:
    with pat_client(datacenter) as client:
        me = ok_json(client.get("/rest/api/2/myself"))
        info = ok_json(client.get("/rest/api/2/serverInfo"))
        projects = ok_json(client.get("/rest/api/2/project"))
    assert me["name"] and me["emailAddress"] == datacenter.config.email
    assert info["deploymentType"] != "Cloud"
    assert isinstance(projects, list) and len(projects) == 3


def test_datacenter_search_pages_by_start_at_and_total(datacenter: Any) -> None:
    with pat_client(datacenter) as client:
        keys = [p["key"] for p in ok_json(client.get("/rest/api/2/project"))]
        jql = f"project in ({', '.join(keys)}) ORDER BY key"
        first = ok_json(client.get("/rest/api/2/search", params={"jql": jql, "maxResults": 25}))
        posted = ok_json(client.post("/rest/api/2/search", json={"jql": jql, "startAt": 25,
                                                                  "maxResults": 25}))
    for page, start in ((first, 0), (posted, 25)):
        assert page["startAt"] == start and page["maxResults"] == 25
        assert page["total"] == 60
        assert len(page["issues"]) == 25
    assert not {i["key"] for i in first["issues"]} & {i["key"] for i in posted["issues"]}


def test_datacenter_rejects_a_wrong_personal_access_token(datacenter: Any) -> None:
    with pat_client(datacenter, "wrong-pat") as client:
        assert error_messages(client.get("/rest/api/2/myself"), 401)


# --- OAuth 2.0 (3LO) -------------------------------------------------------------------


@pytest.fixture
def oauth_fake(fake_jira_factory: Any) -> Any:
    return fake_jira_factory(issues=40, projects=2, token_ttl=600)


def test_oauth_code_flow_reaches_the_api_through_the_cloud_gateway(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        tokens = exchange_code(client, oauth_fake)
        resources = ok_json(client.get("/oauth/token/accessible-resources",
                                       headers=bearer(tokens["access_token"])))
        assert [r["id"] for r in resources] == [oauth_fake.cloud_id]
        assert {"id", "url", "name", "scopes", "avatarUrl"} <= resources[0].keys()
        client.headers.update(bearer(tokens["access_token"]))
        gateway = f"/ex/jira/{resources[0]['id']}"
        me = ok_json(client.get(f"{gateway}/rest/api/3/myself"))
        assert_valid_response("GET", "/rest/api/3/myself", 200, me)
        projects = ok_json(client.get(f"{gateway}/rest/api/3/project/search"))
        assert_valid_response("GET", "/rest/api/3/project/search", 200, projects)
        keys = ", ".join(p["key"] for p in projects["values"])
        issues, _ = walk_token_pages(client, f"project in ({keys})", 10, prefix=gateway)
    assert len(issues) == 40


def test_authorization_code_works_only_once(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        code = authorize(client, oauth_fake)
        grant = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        assert token_request(client, oauth_fake, **grant).status_code == 200
        reused = token_request(client, oauth_fake, **grant)
    assert reused.status_code in (400, 401, 403)
    assert reused.json()["error"] == "invalid_grant"


def test_code_exchange_with_another_redirect_uri_is_refused(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        code = authorize(client, oauth_fake)
        response = token_request(client, oauth_fake, grant_type="authorization_code", code=code,
                                 redirect_uri="http://evil.example/callback")
    assert response.status_code in (400, 401, 403)
    assert response.json()["error"] == "invalid_grant"


def test_token_ttl_changed_at_runtime_applies_to_new_tokens(oauth_fake: Any) -> None:
    oauth_fake.admin.configure(token_ttl=60)
    path = f"/ex/jira/{oauth_fake.cloud_id}/rest/api/3/myself"
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        code = authorize(client, oauth_fake)
        tokens = ok_json(token_request(client, oauth_fake, grant_type="authorization_code",
                                       code=code, redirect_uri=REDIRECT_URI))
        assert tokens["expires_in"] == 60
        oauth_fake.admin.advance_clock(61)
        assert client.get(path, headers=bearer(tokens["access_token"])).status_code == 401


def test_token_request_with_wrong_client_secret_is_refused(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        code = authorize(client, oauth_fake)
        response = client.post("/oauth/token", json={
            "grant_type": "authorization_code", "client_id": oauth_fake.config.oauth_client_id,
            "client_secret": "wrong", "code": code, "redirect_uri": REDIRECT_URI})
    assert response.status_code in (400, 401, 403)
    assert "access_token" not in response.json()


def test_gateway_rejects_basic_auth_and_unknown_cloud_id(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        tokens = exchange_code(client, oauth_fake)
        wrong_site = client.get("/ex/jira/00000000-0000-0000-0000-000000000000/rest/api/3/myself",
                                headers=bearer(tokens["access_token"]))
    assert wrong_site.status_code in (401, 403, 404)
    with basic_client(oauth_fake) as client:
        basic_on_gateway = client.get(f"/ex/jira/{oauth_fake.cloud_id}/rest/api/3/myself")
    assert basic_on_gateway.status_code == 401


def test_access_token_expires_after_its_ttl_on_the_fake_clock(oauth_fake: Any) -> None:
    path = f"/ex/jira/{oauth_fake.cloud_id}/rest/api/3/myself"
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        tokens = exchange_code(client, oauth_fake)
        client.headers.update(bearer(tokens["access_token"]))
        oauth_fake.admin.advance_clock(oauth_fake.config.token_ttl - 60)
        assert client.get(path).status_code == 200
        oauth_fake.admin.advance_clock(61)
        assert error_messages(client.get(path), 401)


def test_refresh_rotates_and_the_used_refresh_token_stops_working(oauth_fake: Any) -> None:
    path = f"/ex/jira/{oauth_fake.cloud_id}/rest/api/3/myself"
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        first = exchange_code(client, oauth_fake)
        oauth_fake.admin.advance_clock(oauth_fake.config.token_ttl + 1)
        assert client.get(path, headers=bearer(first["access_token"])).status_code == 401

        second = ok_json(token_request(client, oauth_fake, grant_type="refresh_token",
                                       refresh_token=first["refresh_token"]))
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert client.get(path, headers=bearer(second["access_token"])).status_code == 200

        replay = token_request(client, oauth_fake, grant_type="refresh_token",
                               refresh_token=first["refresh_token"])
        assert replay.status_code in (400, 401, 403)
        assert replay.json()["error"] == "invalid_grant"

        third = ok_json(token_request(client, oauth_fake, grant_type="refresh_token",
                                      refresh_token=second["refresh_token"]))
        assert client.get(path, headers=bearer(third["access_token"])).status_code == 200


def test_accessible_resources_needs_a_live_access_token(oauth_fake: Any) -> None:
    with httpx.Client(base_url=oauth_fake.base_url) as client:
        tokens = exchange_code(client, oauth_fake)
        oauth_fake.admin.advance_clock(oauth_fake.config.token_ttl + 1)
        expired = client.get("/oauth/token/accessible-resources",
                             headers=bearer(tokens["access_token"]))
        anonymous = client.get("/oauth/token/accessible-resources")
    assert expired.status_code == 401
    assert anonymous.status_code == 401
