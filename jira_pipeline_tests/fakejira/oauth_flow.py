"""The OAuth 2.0 (3LO) dance against the fake: consent redirect, code exchange, bearer headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from jira_pipeline_tests.fakejira.jira_pages import ok_json

REDIRECT_URI = "http://localhost:9999/callback"


def authorize(client: httpx.Client, fake: Any, state: str = "xyz-state") -> str:
    """Run the consent redirect; return the authorization code."""
    response = client.get("/authorize", params={
        "audience": "api.atlassian.com",
        "client_id": fake.config.oauth_client_id,
        "scope": "read:jira-work read:jira-user offline_access",
        "redirect_uri": REDIRECT_URI,
        "state": state,
        "response_type": "code",
        "prompt": "consent",
    })
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def token_request(client: httpx.Client, fake: Any, **grant: str) -> httpx.Response:
    body = {
        "client_id": fake.config.oauth_client_id,
        "client_secret": fake.config.oauth_client_secret,
        **grant,
    }
    return client.post("/oauth/token", json=body)


def exchange_code(client: httpx.Client, fake: Any) -> dict[str, Any]:
    code = authorize(client, fake)
    tokens = ok_json(token_request(client, fake, grant_type="authorization_code", code=code,
                                   redirect_uri=REDIRECT_URI))
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == fake.config.token_ttl
    assert tokens["access_token"] and tokens["refresh_token"]
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
