"""Jira connection settings from environment variables, each problem reported by variable name."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, SecretStr

from jira_pipeline.jira._exceptions import JiraConfigError
from jira_pipeline.jira.auth import OAuthEndpoints
from jira_pipeline.settings import load_dotenv_once

AuthMode = Literal["basic", "pat", "oauth"]

# Atlassian names a Cloud site by a UUID in its canonical 8-4-4-4-12 hex form.
_CLOUD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool,
            minimum: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise JiraConfigError(name, f"must be {kind}, got {raw!r}") from None
    if value < minimum:
        raise JiraConfigError(name, f"must be at least {minimum:g}, got {raw!r}")
    return value


def _url(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    raw = _text(env, name)
    if raw is None:
        return default
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise JiraConfigError(name, f"must be an http(s) URL such as https://acme.atlassian.net, "
                                    f"got {raw!r}")
    return raw.rstrip("/")


def _cloud_id(env: Mapping[str, str]) -> str | None:
    raw = _text(env, "JIRA_CLOUD_ID")
    if raw is not None and not _CLOUD_ID.fullmatch(raw):
        raise JiraConfigError("JIRA_CLOUD_ID", "must be a UUID such as "
                              "1324a887-45db-1bf4-1e99-ef0ff456d421 (the Cloud site's id, from "
                              f"the OAuth accessible-resources answer), got {raw!r}")
    return raw


class JiraSettings(BaseModel):
    """Everything needed to open a `JiraClient`; secrets are SecretStr so repr never shows them."""

    model_config = ConfigDict(frozen=True)

    base_url: str | None = None
    email: str | None = None
    api_token: SecretStr | None = None
    pat: SecretStr | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    cloud_id: str | None = None
    oauth_endpoints: OAuthEndpoints = OAuthEndpoints()
    deployment: Literal["cloud", "datacenter"] | None = None
    min_request_interval_ms: int = 200
    max_in_flight: int = 4
    timeout_s: float = 30.0
    retry_attempts: int = 6
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0
    verify_tls: bool = True

    @property
    def auth_mode(self) -> AuthMode:
        if self.oauth_client_id:
            return "oauth"
        if self.pat is not None:
            return "pat"
        return "basic"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JiraSettings:
        """Read the JIRA_* variables (a `.env` in the working directory fills in unset ones).

        With `environ` given, only that mapping is read, which is what tests want.
        """
        if environ is None:
            load_dotenv_once()
            env: Mapping[str, str] = os.environ
        else:
            env = environ

        email, token, pat = _text(env, "JIRA_EMAIL"), _text(env, "JIRA_API_TOKEN"), _text(
            env, "JIRA_PAT"
        )
        client_id = _text(env, "JIRA_OAUTH_CLIENT_ID")
        client_secret = _text(env, "JIRA_OAUTH_CLIENT_SECRET")
        cloud_id = _cloud_id(env)
        base_url = _url(env, "JIRA_BASE_URL")

        if client_id or client_secret:
            if not client_id:
                raise JiraConfigError("JIRA_OAUTH_CLIENT_ID", "is not set but "
                                      "JIRA_OAUTH_CLIENT_SECRET is")
            if not client_secret:
                raise JiraConfigError("JIRA_OAUTH_CLIENT_SECRET", "is not set but "
                                      "JIRA_OAUTH_CLIENT_ID is")
        elif pat is None:
            if base_url is None:
                raise JiraConfigError("JIRA_BASE_URL", "is not set: the URL of your Jira site, "
                                      "e.g. https://acme.atlassian.net")
            if email is None:
                raise JiraConfigError("JIRA_EMAIL", "is not set: give JIRA_EMAIL and "
                                      "JIRA_API_TOKEN (Cloud), JIRA_PAT (Data Center) or "
                                      "JIRA_OAUTH_CLIENT_ID/SECRET (OAuth)")
            if token is None:
                raise JiraConfigError("JIRA_API_TOKEN", "is not set but JIRA_EMAIL is")
        elif base_url is None:
            raise JiraConfigError("JIRA_BASE_URL", "is not set: the URL of your Data Center site")

        deployment_raw = _text(env, "JIRA_DEPLOYMENT")
        if deployment_raw is not None and deployment_raw not in ("cloud", "datacenter"):
            raise JiraConfigError("JIRA_DEPLOYMENT", f"must be cloud or datacenter, got "
                                  f"{deployment_raw!r}")
        defaults = OAuthEndpoints()
        endpoints = OAuthEndpoints(
            authorize_url=_url(env, "JIRA_OAUTH_AUTHORIZE_URL", defaults.authorize_url) or "",
            token_url=_url(env, "JIRA_OAUTH_TOKEN_URL", defaults.token_url) or "",
            api_base=_text(env, "JIRA_OAUTH_API_BASE") or defaults.api_base,
            accessible_resources_url=_url(
                env, "JIRA_OAUTH_RESOURCES_URL", defaults.accessible_resources_url
            ) or "",
        )
        verify = (_text(env, "JIRA_VERIFY_TLS") or "true").lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise JiraConfigError("JIRA_VERIFY_TLS", f"must be true or false, got {verify!r}")
        return cls(
            base_url=base_url,
            email=email,
            api_token=SecretStr(token) if token else None,
            pat=SecretStr(pat) if pat else None,
            oauth_client_id=client_id,
            oauth_client_secret=SecretStr(client_secret) if client_secret else None,
            cloud_id=cloud_id,
            oauth_endpoints=endpoints,
            deployment=deployment_raw,  # type: ignore[arg-type]
            verify_tls=verify in ("true", "1", "yes"),
            **client_tuning(env),
        )


def client_tuning(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pacing, timeout and retry settings (`JiraSettings` field -> value), validated by name.

    Shared by every site: the environment's and each connection registered in MongoDB.
    """
    if environ is None:
        load_dotenv_once()
        environ = os.environ
    return {
        "min_request_interval_ms": int(_number(environ, "JIRA_MIN_REQUEST_INTERVAL_MS", 200,
                                               integer=True, minimum=0)),
        "max_in_flight": int(_number(environ, "JIRA_MAX_IN_FLIGHT", 4, integer=True, minimum=1)),
        "timeout_s": _number(environ, "JIRA_TIMEOUT_S", 30.0, integer=False, minimum=0.001),
        "retry_attempts": int(_number(environ, "JIRA_RETRY_ATTEMPTS", 6, integer=True,
                                      minimum=1)),
        "retry_base_s": _number(environ, "JIRA_RETRY_BASE_S", 1.0, integer=False, minimum=0),
        "retry_cap_s": _number(environ, "JIRA_RETRY_CAP_S", 60.0, integer=False, minimum=0),
    }
