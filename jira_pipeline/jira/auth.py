"""How requests prove who they are: Cloud API token, Data Center PAT, or OAuth 2.0 (3LO)."""

from __future__ import annotations

import asyncio
import base64
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from jira_pipeline.jira._exceptions import JiraTokenError, JiraTransportError
from jira_pipeline.timeutil import utc_now

Deployment = Literal["cloud", "datacenter"]

DEFAULT_OAUTH_SCOPES = ("read:jira-work", "read:jira-user", "offline_access")


def _secret(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


class JiraAuth:
    """A credential strategy: headers for a request, and what to do when Jira answers 401."""

    deployment: Deployment = "cloud"
    unauthorized_hint = "check the credentials"

    async def headers(self, http: httpx.AsyncClient) -> tuple[dict[str, str], object]:
        """Authorization headers plus a marker of the credential used (handed back on 401)."""
        raise NotImplementedError

    async def recover(self, http: httpx.AsyncClient, used: object) -> bool:
        """After a 401 with credential `used`: True when a retry with fresh credentials may work."""
        return False

    def api_base(self, base_url: str | None) -> str:
        if not base_url:
            raise ValueError("a base URL is needed for this kind of credential")
        return base_url.rstrip("/")

    def secrets(self) -> list[str]:
        """Every secret string this strategy may send, so error texts can be scrubbed of them."""
        return []


class BasicAuth(JiraAuth):
    """Jira Cloud: account email and API token, sent as HTTP basic auth."""

    deployment: Deployment = "cloud"
    unauthorized_hint = "check JIRA_EMAIL and JIRA_API_TOKEN"

    def __init__(self, email: str, api_token: str | SecretStr) -> None:
        self.email = email
        self.api_token = _secret(api_token)
        raw = f"{email}:{self.api_token.get_secret_value()}".encode()
        self._header = SecretStr("Basic " + base64.b64encode(raw).decode("ascii"))

    async def headers(self, http: httpx.AsyncClient) -> tuple[dict[str, str], object]:
        return {"Authorization": self._header.get_secret_value()}, None

    def secrets(self) -> list[str]:
        value = self._header.get_secret_value()
        return [self.api_token.get_secret_value(), value, value.removeprefix("Basic ")]

    def __repr__(self) -> str:
        return f"BasicAuth(email={self.email!r}, api_token=SecretStr('**********'))"


class BearerPAT(JiraAuth):
    """Jira Data Center: a personal access token sent as a Bearer token."""

    deployment: Deployment = "datacenter"
    unauthorized_hint = "check JIRA_PAT (and that it has not expired)"

    def __init__(self, token: str | SecretStr) -> None:
        self.token = _secret(token)

    async def headers(self, http: httpx.AsyncClient) -> tuple[dict[str, str], object]:
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}, None

    def secrets(self) -> list[str]:
        return [self.token.get_secret_value()]

    def __repr__(self) -> str:
        return "BearerPAT(token=SecretStr('**********'))"


@dataclass(frozen=True)
class OAuthTokens:
    """One grant from the token endpoint; `expires_at` is aware UTC.

    `previous_refresh_token` is the refresh token this grant replaced (None for a code
    exchange): a store can save compare-and-set against it.
    """

    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: datetime
    scope: str = ""
    previous_refresh_token: SecretStr | None = None

    @classmethod
    def from_token_response(
        cls, body: dict[str, Any], now: datetime, previous_refresh_token: SecretStr | None = None
    ) -> OAuthTokens:
        try:
            return cls(
                access_token=SecretStr(str(body["access_token"])),
                refresh_token=SecretStr(str(body["refresh_token"])),
                expires_at=now + timedelta(seconds=float(body.get("expires_in", 3600))),
                scope=str(body.get("scope", "")),
                previous_refresh_token=previous_refresh_token,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise JiraTokenError(
                f"the token endpoint answered without {error} (no refresh_token means the "
                "`offline_access` scope was not granted)"
            ) from None


TokenSaver = Callable[[OAuthTokens], Awaitable[None] | None]
"""Persists rotated tokens; must finish before the new access token is used."""

TokenLoader = Callable[[], Awaitable[OAuthTokens | None] | OAuthTokens | None]
"""Reads the tokens the store holds now: another process may have rotated them meanwhile."""


@dataclass(frozen=True)
class OAuthEndpoints:
    """Atlassian's OAuth endpoints; tests point them at the fake's origin."""

    authorize_url: str = "https://auth.atlassian.com/authorize"
    token_url: str = "https://auth.atlassian.com/oauth/token"
    api_base: str = "https://api.atlassian.com/ex/jira/{cloudId}"
    accessible_resources_url: str = "https://api.atlassian.com/oauth/token/accessible-resources"

    @classmethod
    def at_origin(cls, origin: str) -> OAuthEndpoints:
        """All four endpoints under one origin, laid out as Atlassian lays them out."""
        base = origin.rstrip("/")
        return cls(
            authorize_url=f"{base}/authorize",
            token_url=f"{base}/oauth/token",
            api_base=f"{base}/ex/jira/{{cloudId}}",
            accessible_resources_url=f"{base}/oauth/token/accessible-resources",
        )


@dataclass
class OAuth3LO(JiraAuth):
    """OAuth 2.0 authorization-code grant with rotating refresh tokens (Jira Cloud).

    Access tokens are refreshed `refresh_margin` before they expire and once after a 401. Each
    new grant is handed to `on_tokens` and only used once that returned: a crash between the
    token request and the save can never lose the only valid refresh token silently. Concurrent
    refreshes in one process share one token request. With `load_tokens`, a refresh first reads
    the store: when another process already rotated the tokens, those are adopted instead of
    spending a refresh token that Jira has retired.
    """

    client_id: str
    client_secret: SecretStr
    tokens: OAuthTokens | None = None
    cloud_id: str | None = None
    on_tokens: TokenSaver | None = field(default=None, repr=False)
    load_tokens: TokenLoader | None = field(default=None, repr=False)
    endpoints: OAuthEndpoints = field(default_factory=OAuthEndpoints)
    refresh_margin: timedelta = timedelta(seconds=60)
    scopes: tuple[str, ...] = DEFAULT_OAUTH_SCOPES
    clock: Callable[[], datetime] = field(default=utc_now, repr=False)
    timeout: float = 30.0
    refreshes: int = field(default=0, init=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    deployment: Deployment = field(default="cloud", init=False, repr=False)
    unauthorized_hint = "refused even after a token refresh: authorize the connection again"

    def __post_init__(self) -> None:
        self.client_secret = _secret(self.client_secret)

    def __repr__(self) -> str:
        return (
            f"OAuth3LO(client_id={self.client_id!r}, cloud_id={self.cloud_id!r}, "
            f"client_secret=SecretStr('**********'), tokens={'set' if self.tokens else None})"
        )

    def authorize_url(
        self, state: str, redirect_uri: str, scopes: tuple[str, ...] | None = None
    ) -> str:
        """Where to send the user to consent; `state` must be checked on the way back."""
        wanted = tuple(scopes or self.scopes)
        if "offline_access" not in wanted:
            # Without it Atlassian issues no refresh token and the connection dies within an hour.
            wanted = (*wanted, "offline_access")
        query = urlencode(
            {
                "audience": "api.atlassian.com",
                "client_id": self.client_id,
                "scope": " ".join(wanted),
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "prompt": "consent",
            }
        )
        return f"{self.endpoints.authorize_url}?{query}"

    async def exchange_code(
        self, code: str, redirect_uri: str, http: httpx.AsyncClient | None = None
    ) -> OAuthTokens:
        """Trade the authorization code for tokens; saved through `on_tokens` before use."""
        body = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
            "code": code,
            "redirect_uri": redirect_uri,
        }
        tokens = await self._token_request(body, "authorization_code", http)
        await self._save_then_install(tokens)
        return tokens

    async def accessible_resources(self, http: httpx.AsyncClient | None = None) -> list[dict]:
        """The sites this grant can reach: [{id (the cloud id), url, name, scopes, ...}]."""
        headers, _ = await self.headers(http)
        url = self.endpoints.accessible_resources_url
        async with _client(http, self.timeout) as session:
            try:
                response = await session.get(url, headers=headers)
            except httpx.TransportError as error:
                raise JiraTransportError(str(error) or type(error).__name__, method="GET",
                                         path=httpx.URL(url).path) from None
        if response.status_code != 200:
            raise JiraTokenError(f"accessible-resources answered HTTP {response.status_code}")
        resources = response.json()
        if not isinstance(resources, list):
            raise JiraTokenError("accessible-resources did not answer a JSON array")
        return resources

    async def discover_cloud_id(self, http: httpx.AsyncClient | None = None) -> str:
        """Set `cloud_id` from the first accessible site (or check the configured one is there)."""
        resources = await self.accessible_resources(http)
        ids = [str(resource.get("id")) for resource in resources]
        if not ids:
            raise JiraTokenError("this OAuth grant reaches no Jira site")
        if self.cloud_id is None:
            self.cloud_id = ids[0]
        elif self.cloud_id not in ids:
            raise JiraTokenError(f"cloud id {self.cloud_id} is not among this grant's sites {ids}")
        return self.cloud_id

    def api_base(self, base_url: str | None) -> str:
        if not self.cloud_id:
            raise JiraTokenError("OAuth needs a cloud id (JIRA_CLOUD_ID or discover_cloud_id())")
        return self.endpoints.api_base.format(cloudId=self.cloud_id).rstrip("/")

    async def headers(self, http: httpx.AsyncClient | None) -> tuple[dict[str, str], object]:
        tokens = self.tokens
        if tokens is None:
            raise JiraTokenError("no OAuth tokens yet: authorize the connection first")
        if tokens.expires_at - self.refresh_margin <= self.clock():
            tokens = await self.refresh(http, stale=tokens)
        return {"Authorization": f"Bearer {tokens.access_token.get_secret_value()}"}, tokens

    async def recover(self, http: httpx.AsyncClient, used: object) -> bool:
        if not isinstance(used, OAuthTokens):
            return False
        await self.refresh(http, stale=used)
        return True

    async def refresh(
        self, http: httpx.AsyncClient | None = None, *, stale: OAuthTokens | None = None
    ) -> OAuthTokens:
        """Rotate the tokens; callers that saw the same `stale` tokens share one token request."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self.tokens
            if current is None:
                raise JiraTokenError("no OAuth tokens yet: authorize the connection first")
            if stale is not None and current is not stale:
                return current  # another task refreshed while we waited for the lock
            stored = await self._stored_tokens()
            if stored is not None and (
                stored.refresh_token.get_secret_value() != current.refresh_token.get_secret_value()
            ):
                # Another process rotated them: its refresh token is the live one now.
                self.tokens = current = stored
                if stored.expires_at - self.refresh_margin > self.clock() and (
                    stale is None or stored.access_token != stale.access_token
                ):
                    return stored
            body = {
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "client_secret": self.client_secret.get_secret_value(),
                "refresh_token": current.refresh_token.get_secret_value(),
            }
            tokens = await self._token_request(body, "refresh_token", http, current.refresh_token)
            await self._save_then_install(tokens)
            self.refreshes += 1
            return tokens

    async def _stored_tokens(self) -> OAuthTokens | None:
        if self.load_tokens is None:
            return None
        result = self.load_tokens()
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _save_then_install(self, tokens: OAuthTokens) -> None:
        if self.on_tokens is not None:
            try:
                result = self.on_tokens(tokens)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                reason = self._scrub(f"{type(error).__name__}: {error}", tokens)
                raise JiraTokenError(
                    f"new OAuth tokens could not be saved ({reason}), so the new access token was "
                    "not used; Jira has already retired the previous refresh token, so the "
                    "connection must be authorized again if this persists"
                ) from None
        self.tokens = tokens

    async def _token_request(
        self,
        body: dict[str, str],
        grant: str,
        http: httpx.AsyncClient | None,
        replaced: SecretStr | None = None,
    ) -> OAuthTokens:
        url = self.endpoints.token_url
        async with _client(http, self.timeout) as session:
            try:
                # Never retried: a lost answer to a rotation cannot be replayed anyway.
                response = await session.post(
                    url, json=body, headers={"Accept": "application/json"}
                )
            except httpx.TransportError as error:
                raise JiraTransportError(
                    str(error) or type(error).__name__, method="POST", path=httpx.URL(url).path
                ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or not isinstance(payload, dict):
            reason = ""
            if isinstance(payload, dict):
                reason = str(payload.get("error_description") or payload.get("error") or "")
            raise JiraTokenError(
                f"the token endpoint refused the {grant} grant: HTTP {response.status_code}"
                + (f" ({self._scrub(reason)})" if reason else "")
            )
        return OAuthTokens.from_token_response(payload, self.clock(), replaced)

    def secrets(self) -> list[str]:
        found = [self.client_secret.get_secret_value()]
        if self.tokens is not None:
            found += [
                self.tokens.access_token.get_secret_value(),
                self.tokens.refresh_token.get_secret_value(),
            ]
        return found

    def _scrub(self, text: str, extra: OAuthTokens | None = None) -> str:
        secrets = self.secrets()
        if extra is not None:
            secrets += [
                extra.access_token.get_secret_value(),
                extra.refresh_token.get_secret_value(),
            ]
        return scrub(text, secrets)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every known secret (longest first) replaced by asterisks."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "**********")
    return text


class _client:
    """The caller's httpx client, or a short-lived one when none was given."""

    def __init__(self, http: httpx.AsyncClient | None, timeout: float) -> None:
        self.http = http
        self.owned: httpx.AsyncClient | None = None
        self.timeout = timeout

    async def __aenter__(self) -> httpx.AsyncClient:
        if self.http is not None:
            return self.http
        self.owned = httpx.AsyncClient(timeout=self.timeout)
        return self.owned

    async def __aexit__(self, *exc: object) -> None:
        if self.owned is not None:
            await self.owned.aclose()
