"""Errors raised while talking to Jira: one small typed hierarchy, never carrying a credential."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class JiraError(Exception):
    """Anything that went wrong talking to Jira (bad settings are a `ConfigurationError`)."""


class JqlError(JiraError, ValueError):
    """A JQL fragment or project key was refused because it could change the query's meaning."""


class _RequestError(JiraError):
    """An error tied to one request: which method and which path (the query string is left out)."""

    def __init__(self, message: str, *, method: str, path: str) -> None:
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: {message}")


class JiraTransportError(_RequestError):
    """The request never got an HTTP answer: connect or read timeout, reset, broken framing.

    `host` and `port` say where it was going: "All connection attempts failed" alone does not
    tell a misspelt URL from a server that is down.
    """

    def __init__(
        self, message: str, *, method: str, path: str, host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        where = f" (connecting to {host}:{port})" if host else ""
        super().__init__(message + where, method=method, path=path)


class JiraHTTPError(_RequestError):
    """Jira answered with an error status; `error_messages` are Jira's own `errorMessages`."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int,
        error_messages: Iterable[str] = (),
        errors: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error_messages = list(error_messages)
        self.errors = dict(errors or {})
        details = "; ".join([*self.error_messages, *(f"{k}: {v}" for k, v in self.errors.items())])
        text = f"HTTP {status} {message}" + (f" ({details})" if details else "")
        super().__init__(text, method=method, path=path)


class JiraBadRequest(JiraHTTPError):
    """400: Jira refused the request itself (bad JQL, unknown field); retrying cannot help."""


class JiraAuthError(JiraHTTPError):
    """401: credentials missing, wrong, or expired beyond what a token refresh could fix."""


class JiraPermissionError(JiraHTTPError):
    """403: authenticated, but the account may not see this resource."""


class JiraNotFound(JiraHTTPError):
    """404: no such resource, or one the account may not know exists."""


class JiraRateLimited(JiraHTTPError):
    """429 after every attempt was used; `retry_after` is Jira's last advice in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class JiraServerError(JiraHTTPError):
    """5xx after every attempt was used."""


class JiraResponseError(_RequestError):
    """Jira's answer could not be read: malformed or truncated JSON, an HTML page, a wrong shape."""

    def __init__(self, message: str, *, method: str, path: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message, method=method, path=path)


class JiraMalformedBody(JiraResponseError):
    """A 2xx whose JSON body is malformed or truncated after every attempt was used."""


# Both bases set `status`; the gateway error always has one, so the int of JiraHTTPError holds
# (mypy sees only that JiraResponseError's may be None).
class JiraGatewayError(JiraServerError, JiraResponseError):  # type: ignore[misc]
    """A 5xx whose body is an HTML page (a proxy or gateway answered, not Jira): both kinds."""

    def __init__(self, message: str, *, method: str, path: str, status: int) -> None:
        JiraServerError.__init__(self, message, method=method, path=path, status=status)
        # JiraResponseError's initialiser runs along the MRO with no status: restore it.
        self.status = status


class JiraPaginationError(JiraError):
    """Pages repeated, went backwards or never ended: stopping instead of looping forever."""


class JiraTokenError(JiraError):
    """OAuth: the token endpoint refused a grant, or rotated tokens could not be saved."""


HTTP_ERRORS: dict[int, type[JiraHTTPError]] = {
    400: JiraBadRequest,
    401: JiraAuthError,
    403: JiraPermissionError,
    404: JiraNotFound,
    429: JiraRateLimited,
}


def http_error_class(status: int) -> type[JiraHTTPError]:
    if status >= 500:
        return JiraServerError
    return HTTP_ERRORS.get(status, JiraHTTPError)
