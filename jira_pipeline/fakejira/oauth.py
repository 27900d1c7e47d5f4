"""Atlassian's OAuth 2.0 (3LO) as the fake plays it: codes, rotating refresh tokens, expiry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SCOPES = "read:jira-work read:jira-user offline_access"


class OAuthError(Exception):
    """A refused grant; `status` and `body` are what Atlassian's token endpoint answers."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass
class AccessToken:
    expires_at_ms: int
    scope: str


@dataclass
class OAuthIssuer:
    """Issues and checks tokens; the clock is the fake's, so moving it expires tokens."""

    client_id: str
    client_secret: str
    seed: int
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (redirect, scope)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)  # live refresh token -> scope
    counter: int = 0

    def _token(self, kind: str) -> str:
        # Deterministic per fake (seed and issue order): repeatable runs, never guessable ones
        # across seeds; these secrets protect nothing but a test server.
        self.counter += 1
        digest = hashlib.sha256(f"{kind}:{self.seed}:{self.counter}".encode()).hexdigest()
        return f"{kind}-{digest[:40]}"

    def authorize(self, client_id: str | None, redirect_uri: str | None, scope: str | None) -> str:
        if client_id != self.client_id:
            raise OAuthError(400, "invalid_client", "Unknown client_id.")
        if not redirect_uri:
            raise OAuthError(400, "invalid_request", "redirect_uri is required.")
        code = self._token("code")
        self.codes[code] = (redirect_uri, scope or SCOPES)
        return code

    def grant(self, body: dict, now_ms: int, ttl_s: int) -> dict:
        if body.get("client_id") != self.client_id or (
            body.get("client_secret") != self.client_secret
        ):
            raise OAuthError(401, "access_denied", "Unauthorized")
        grant_type = body.get("grant_type")
        scope: str | None
        if grant_type == "authorization_code":
            entry = self.codes.pop(str(body.get("code")), None)
            if entry is None:
                raise OAuthError(403, "invalid_grant", "Invalid authorization code")
            redirect, scope = entry
            if body.get("redirect_uri") not in (None, redirect):
                raise OAuthError(403, "invalid_grant", "redirect_uri does not match")
        elif grant_type == "refresh_token":
            # Rotation: the presented refresh token is spent whatever happens next.
            scope = self.refresh.pop(str(body.get("refresh_token")), None)
            if scope is None:
                raise OAuthError(403, "invalid_grant", "Unknown or invalid refresh token.")
        else:
            raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
        access, refresh = self._token("access"), self._token("refresh")
        self.access[access] = AccessToken(now_ms + ttl_s * 1000, scope)
        self.refresh[refresh] = scope
        return {"access_token": access, "refresh_token": refresh, "expires_in": ttl_s,
                "scope": scope, "token_type": "Bearer"}

    def check(self, token: str, now_ms: int) -> bool:
        entry = self.access.get(token)
        return entry is not None and now_ms < entry.expires_at_ms
