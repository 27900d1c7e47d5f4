"""`JiraClient`: Jira's REST API over pooled async HTTP, paced, retried, paginated and counted."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx
import orjson

from jira_pipeline import __version__
from jira_pipeline.jira._exceptions import (
    JiraAuthError,
    JiraBadRequest,
    JiraError,
    JiraGatewayError,
    JiraMalformedBody,
    JiraNotFound,
    JiraPaginationError,
    JiraRateLimited,
    JiraResponseError,
    JiraTransportError,
    http_error_class,
)
from jira_pipeline.jira.auth import (
    BasicAuth,
    BearerPAT,
    JiraAuth,
    OAuth3LO,
    OAuthTokens,
    TokenLoader,
    TokenSaver,
    scrub,
)
from jira_pipeline.jira.jql import IssueWindow, build_issue_jql, keyset_jql
from jira_pipeline.jira.pagination import (
    KeysetPosition,
    array_pages,
    keyset_pages,
    offset_pages,
    token_pages,
)
from jira_pipeline.jira.ratelimit import RateLimiter, pause_from_headers
from jira_pipeline.jira.retry import RetryPolicy
from jira_pipeline.jira.sprints import NO_SPRINTS_MESSAGE, SprintsNotSupported
from jira_pipeline.settings import PipelineSettings

USER_AGENT = f"jira-pipeline/{__version__}"
FULL_PAGE_SIZE = 100  # Jira's maximum for full issues: half the calls of the default 50
ID_PAGE_SIZE = 5000  # Cloud serves this many when only ids are asked for
DC_ID_PAGE_SIZE = 1000  # Data Center's maxResults ceiling
AGILE_PREFIX = "/rest/agile/1.0"  # Jira Software's API, the same path on Cloud and Data Center
BULK_FETCH_SIZE = 100  # issues per Cloud bulkfetch (its maximum) or Data Center `id in` search

RequestKind = Literal["api", "search", "count"]
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass
class ClientCounters:
    """What a client cost: the figures an asset reports in its materialization metadata.

    `wait_seconds` sums, over requests, the time spent in 429 pauses and retry backoff.
    """

    api_calls: int = 0
    search_calls: int = 0
    count_calls: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    wait_seconds: float = 0.0
    bytes_received: int = 0
    token_refreshes: int = 0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


# The ledgers of the task sending a request: besides the client's own counters, each request
# counts in every ledger the sending task's context holds (see `counted`), so work started
# concurrently (a step's dimensions fetched at once) still reports its own share.
_LEDGERS: ContextVar[tuple[ClientCounters, ...]] = ContextVar("jira_client_ledgers", default=())


@contextmanager
def counted(ledger: ClientCounters) -> Iterator[ClientCounters]:
    """Count the requests this task (and the tasks it starts) sends in `ledger` as well:
    requests, searches, counts, retries, rate-limit waits, bytes and retry backoff. The
    limiter's own pauses (after a 429, every request waits) and token refreshes are shared by
    every request under way and stay in the client's figures only."""
    token = _LEDGERS.set((*_LEDGERS.get(), ledger))
    try:
        yield ledger
    finally:
        _LEDGERS.reset(token)


@dataclass
class IssueBatch:
    """One answer of `JiraClient.issues_by_id`: the issues found, and the ids Jira reported an
    error for (`issueErrors`: retriable or too large, so neither found nor proven absent)."""

    issues: list[dict[str, Any]]
    unavailable: list[str]


class _Unauthorized(Exception):
    """A 401, carried up to the retry loop together with the credential that got it."""

    def __init__(self, error: JiraAuthError, used: object) -> None:
        self.error = error
        self.used = used


@functools.cache
def _verifying_tls_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context per process, as httpx builds it (SSL_CERT_FILE
    included): loading the CA bundle costs about 40 ms of CPU a client, and the registered
    sites' refresh sensor opens a client per site at every tick."""
    return httpx.create_ssl_context()


class JiraClient:
    """One Jira connection: every request is paced by `limiter` and retried by `retry`.

    Use as `async with JiraClient(...) as client:`. Cloud speaks REST v3 (search/jql with
    `nextPageToken`); Data Center speaks REST v2 (search with `startAt`/`total`).
    """

    def __init__(
        self,
        auth: JiraAuth,
        base_url: str | None = None,
        *,
        deployment: Literal["cloud", "datacenter"] | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        user_agent: str = USER_AGENT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.auth = auth
        self.deployment = deployment or auth.deployment
        self.api_base = auth.api_base(base_url)
        self.api_prefix = "/rest/api/2" if self.deployment == "datacenter" else "/rest/api/3"
        self.limiter = limiter or RateLimiter()
        self.retry = retry or RetryPolicy()
        self._counters = ClientCounters()
        pool = max(10, self.limiter.max_in_flight * 2)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=_verifying_tls_context() if verify else False,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: PipelineSettings,
        *,
        tokens: OAuthTokens | None = None,
        on_tokens: TokenSaver | None = None,
        load_tokens: TokenLoader | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> JiraClient:
        """A client for the configured credential; OAuth also needs the stored tokens and the
        callbacks that save (and re-read) them."""
        auth: JiraAuth
        mode = settings.auth_mode
        if mode == "oauth":
            assert settings.oauth_client_id and settings.oauth_client_secret
            auth = OAuth3LO(
                client_id=settings.oauth_client_id,
                client_secret=settings.oauth_client_secret,
                tokens=tokens,
                cloud_id=settings.cloud_id,
                on_tokens=on_tokens,
                load_tokens=load_tokens,
                endpoints=settings.oauth_endpoints,
                timeout=settings.timeout_s,
            )
        elif mode == "pat":
            assert settings.pat is not None
            auth = BearerPAT(settings.pat)
        else:
            assert settings.email and settings.api_token is not None
            auth = BasicAuth(settings.email, settings.api_token)
        return cls(
            auth,
            settings.base_url,
            deployment=settings.deployment,
            timeout=settings.timeout_s,
            verify=settings.verify_tls,
            limiter=RateLimiter(settings.min_request_interval_ms / 1000, settings.max_in_flight),
            retry=RetryPolicy(settings.retry_attempts, settings.retry_base_s, settings.retry_cap_s),
            transport=transport,
        )

    async def __aenter__(self) -> JiraClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"JiraClient({self.api_base!r}, deployment={self.deployment!r}, auth={self.auth!r})"

    @property
    def counters(self) -> ClientCounters:
        """A snapshot of this client's counters."""
        snapshot = ClientCounters(**asdict(self._counters))
        # The counters hold the retry backoff; the limiter's 429 pauses are its own.
        snapshot.wait_seconds = round(self._counters.wait_seconds + self.limiter.wait_seconds, 3)
        snapshot.token_refreshes = getattr(self.auth, "refreshes", 0)
        return snapshot

    def _count(self, figure: str, amount: float = 1) -> None:
        for counters in (self._counters, *_LEDGERS.get()):
            setattr(counters, figure, getattr(counters, figure) + amount)

    # --- requests -------------------------------------------------------------------------

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        kind: RequestKind = "api",
    ) -> Any:
        """Send one API request (path under the API base) with pacing, retries and one re-auth."""
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            try:
                return await self._send(method, path, params, json, kind, attempt)
            except _Unauthorized as unauthorized:
                if not reauthenticated and await self.auth.recover(self._http, unauthorized.used):
                    reauthenticated = True
                    attempt -= 1
                    continue
                raise unauthorized.error from None
            except JiraError as error:
                if not self.retry.should_retry(error, attempt):
                    raise
                self._count("retries")
                if not isinstance(error, JiraRateLimited):
                    # 429s wait in the limiter (every request pauses); others back off alone.
                    delay = self.retry.backoff(attempt - 1)
                    self._count("wait_seconds", delay)
                    await asyncio.sleep(delay)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        kind: RequestKind,
        attempt: int,
    ) -> Any:
        url = self.api_base + path
        async with self.limiter.slot():
            headers, used = await self.auth.headers(self._http)
            self._count("api_calls")
            if kind == "search":
                self._count("search_calls")
            elif kind == "count":
                self._count("count_calls")
            try:
                response = await self._http.request(
                    method, url, params=params, json=json, headers=headers
                )
            except httpx.TransportError as error:
                reason = self._scrub(str(error)) or type(error).__name__
                target = httpx.URL(url)
                raise JiraTransportError(
                    f"{type(error).__name__}: {reason}", method=method, path=path,
                    host=target.host, port=target.port or _DEFAULT_PORTS.get(target.scheme),
                ) from None
        self._count("bytes_received", len(response.content))
        status = response.status_code
        if 200 <= status < 300:
            self.limiter.observe(response.headers)
            return self._decode(response, method, path)
        raise self._error(response, method, path, used, attempt)

    def _decode(self, response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        content_type = response.headers.get("content-type", "")
        if "html" in content_type:
            raise JiraResponseError(
                f"HTTP {response.status_code} with an HTML page instead of JSON",
                method=method, path=path, status=response.status_code,
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            # Retried by request_json like a transport error; raised once attempts run out.
            raise JiraMalformedBody(
                f"HTTP {response.status_code} with a malformed or truncated JSON body "
                f"({len(response.content)} bytes: {error})",
                method=method, path=path, status=response.status_code,
            ) from None

    def _error(
        self, response: httpx.Response, method: str, path: str, used: object, attempt: int
    ) -> Exception:
        status = response.status_code
        body: Any = None
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        messages: list[str] = []
        errors: dict[str, str] = {}
        if isinstance(body, dict):
            messages = [self._scrub(str(m)) for m in body.get("errorMessages") or []]
            raw_errors = body.get("errors")
            if isinstance(raw_errors, dict):
                errors = {str(k): self._scrub(str(v)) for k, v in raw_errors.items()}
            if not messages and body.get("message"):
                messages = [self._scrub(str(body["message"]))]
        reason = response.reason_phrase or ""
        if status == 429:
            pause = pause_from_headers(response.headers)
            if pause is None:
                pause = self.retry.backoff(attempt - 1)
            self.limiter.pause(pause)
            self._count("rate_limit_waits")
            return JiraRateLimited(
                reason, retry_after=pause, method=method, path=path, status=status,
                error_messages=messages, errors=errors,
            )
        if status >= 500 and body is None and "html" in response.headers.get("content-type", ""):
            return JiraGatewayError(
                f"{reason} with an HTML page instead of JSON (a proxy or gateway answered)",
                method=method, path=path, status=status,
            )
        error_class = http_error_class(status)
        if status == 401:
            reason = f"{reason}: {self.auth.unauthorized_hint}"
        error = error_class(
            reason, method=method, path=path, status=status, error_messages=messages,
            errors=errors,
        )
        if isinstance(error, JiraAuthError):
            return _Unauthorized(error, used)
        return error

    def _scrub(self, text: str) -> str:
        return scrub(text, self.auth.secrets())

    # --- domain methods -------------------------------------------------------------------

    async def myself(self) -> dict[str, Any]:
        """The account the credential belongs to (with its `timeZone`)."""
        return await self.request_json("GET", f"{self.api_prefix}/myself")

    async def server_info(self) -> dict[str, Any]:
        return await self.request_json("GET", f"{self.api_prefix}/serverInfo")

    async def fields(self) -> list[dict[str, Any]]:
        return await self._array("GET", f"{self.api_prefix}/field")

    async def issue_comment_page(
        self, issue_id: str, start_at: int = 0, max_results: int = 100
    ) -> dict[str, Any]:
        """One page (PageOfComments) of an issue's comments, oldest first (Cloud v3 bodies are
        ADF, Data Center's plain text); see `jira.comments.comment_thread` for the whole one."""
        path = f"{self.api_prefix}/issue/{issue_id}/comment"
        params = {"startAt": start_at, "maxResults": max_results, "orderBy": "created"}
        body = await self.request_json("GET", path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("comments"), list):
            raise JiraResponseError("answer has no list `comments`", method="GET", path=path)
        return body

    async def projects(self, *, archived: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Every project the account can browse; `archived`: archived ones too (Cloud's
        `status=live&status=archived`, Data Center's `includeArchived=true`)."""
        if self.deployment == "datacenter":
            path = f"{self.api_prefix}/project"
            body = await self.request_json(
                "GET", path, params={"includeArchived": "true"} if archived else None)
            if not isinstance(body, list):
                raise JiraResponseError("expected a JSON array", method="GET", path=path)
            for project in body:
                yield project
            return
        path = f"{self.api_prefix}/project/search"
        extra = {"status": ["live", "archived"]} if archived else None
        async for page in offset_pages(self._getter(path, extra), page_size=50,
                                       where=f"GET {path}"):
            for project in page:
                yield project

    async def statuses(self) -> AsyncIterator[dict[str, Any]]:
        """Every status, global and project-scoped."""
        if self.deployment == "datacenter":
            for status in await self._array("GET", f"{self.api_prefix}/status"):
                yield status
            return
        path = f"{self.api_prefix}/statuses/search"
        async for page in offset_pages(self._getter(path), page_size=200, where=f"GET {path}"):
            for status in page:
                yield status

    async def issue_types(self) -> list[dict[str, Any]]:
        """Every issue type (one unpaged list on Cloud and Data Center)."""
        return await self._array("GET", f"{self.api_prefix}/issuetype")

    # 50 a page: the OpenAPI document's default `maxResults` of both searches.
    async def priorities(self, page_size: int = 50) -> AsyncIterator[dict[str, Any]]:
        """Every priority: Cloud's paged /priority/search, Data Center's unpaged /priority."""
        async for priority in self._reference_rows("priority", page_size):
            yield priority

    async def resolutions(self, page_size: int = 50) -> AsyncIterator[dict[str, Any]]:
        """Every resolution: Cloud's paged /resolution/search, Data Center's /resolution."""
        async for resolution in self._reference_rows("resolution", page_size):
            yield resolution

    async def status_categories(self) -> list[dict[str, Any]]:
        """Every status category (one unpaged list on Cloud and Data Center)."""
        return await self._array("GET", f"{self.api_prefix}/statuscategory")

    async def _reference_rows(self, resource: str, page_size: int) -> AsyncIterator[dict[str, Any]]:
        if self.deployment == "datacenter":
            for row in await self._array("GET", f"{self.api_prefix}/{resource}"):
                yield row
            return
        path = f"{self.api_prefix}/{resource}/search"
        async for page in offset_pages(self._getter(path), page_size=page_size,
                                       where=f"GET {path}"):
            for row in page:
                yield row

    async def project_versions(
        self, project: str, page_size: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """Every version of a project (id or key), archived ones included: the paged
        /project/{key}/version on Cloud and Data Center alike. JiraNotFound when Jira has no
        such project (any more)."""
        path = f"{self.api_prefix}/project/{project}/version"
        async for page in offset_pages(self._getter(path), page_size=page_size,
                                       where=f"GET {path}"):
            for version in page:
                yield version

    async def project_components(
        self, project: str, page_size: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """Every component of a project (id or key): Cloud's paged /project/{key}/component,
        Data Center's unpaged /components. JiraNotFound when Jira has no such project."""
        if self.deployment == "datacenter":
            for component in await self._array("GET",
                                               f"{self.api_prefix}/project/{project}/components"):
                yield component
            return
        path = f"{self.api_prefix}/project/{project}/component"
        async for page in offset_pages(self._getter(path), page_size=page_size,
                                       where=f"GET {path}"):
            for component in page:
                yield component

    # --- Jira Software (/rest/agile/1.0, served alike by Cloud and Data Center) ------------

    async def boards(self, page_size: int = 50) -> AsyncIterator[dict[str, Any]]:
        """Every board the account can see (scrum, kanban, simple), 50 a page; none on a site
        without Jira Software, whose agile API answers 404 at its first page."""
        path = f"{AGILE_PREFIX}/board"
        served = 0
        try:
            async for page in offset_pages(self._getter(path), page_size=page_size,
                                           where=f"GET {path}"):
                for board in page:
                    served += 1
                    yield board
        except JiraNotFound:
            if served:
                raise

    async def board_sprints(
        self, board_id: str, page_size: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """Every sprint a board shows, all states (a board whose filter spans another board's
        project shows that board's sprints too). SprintsNotSupported when Jira answers 400
        "The board does not support sprints"; any other 400 is raised as it came."""
        path = f"{AGILE_PREFIX}/board/{board_id}/sprint"
        try:
            async for page in offset_pages(self._getter(path), page_size=page_size,
                                           where=f"GET {path}"):
                for sprint in page:
                    yield sprint
        except JiraBadRequest as error:
            if any(NO_SPRINTS_MESSAGE in message for message in error.error_messages):
                raise SprintsNotSupported(board_id) from None
            raise

    async def sprint(self, sprint_id: str) -> dict[str, Any] | None:
        """One sprint by id; None when Jira has no such sprint (or the account cannot see it)."""
        try:
            found = await self.request_json("GET", f"{AGILE_PREFIX}/sprint/{sprint_id}")
        except JiraNotFound:
            return None
        return found if isinstance(found, dict) else None

    async def users(self, page_size: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Every user, active or not, each once.

        Data Center lists only active users unless `includeInactive=true`, and Jira DC 10
        answers at most 100 users whatever `maxResults` asks: a short page is not the last, so
        its walk goes on until an empty page. Cloud's bare-array pages end at a short page.
        """
        if self.deployment == "datacenter":
            path = f"{self.api_prefix}/user/search"
            fetch = self._getter(
                path, {"username": ".", "includeActive": "true", "includeInactive": "true"}
            )
            async for user in _pages_until_empty(fetch, page_size, where=f"GET {path}"):
                yield user
            return
        path = f"{self.api_prefix}/users/search"
        async for page in array_pages(self._getter(path), page_size=page_size,
                                      where=f"GET {path}"):
            for user in page:
                yield user

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """One user by the id issues reference it by (Cloud accountId; Data Center key, or
        username on servers without keys); None when Jira has no such user."""
        path = f"{self.api_prefix}/user"
        if self.deployment == "datacenter":
            lookups: tuple[dict[str, str], ...] = ({"key": user_id}, {"username": user_id})
        else:
            lookups = ({"accountId": user_id},)
        for params in lookups:
            try:
                found = await self.request_json("GET", path, params=params)
            except JiraNotFound:
                continue
            if isinstance(found, dict):
                return found
        return None

    async def search_issues(
        self,
        jql: str,
        fields: Sequence[str] = ("*all",),
        expand: Sequence[str] = (),
        page_size: int = FULL_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every issue matching `jql`, as Jira's raw JSON, one page in memory at a time."""
        async for page in self.search_pages(jql, fields, expand, page_size):
            for issue in page:
                yield issue

    async def search_pages(
        self,
        jql: str,
        fields: Sequence[str] = ("*all",),
        expand: Sequence[str] = (),
        page_size: int = FULL_PAGE_SIZE,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of `search_issues`."""
        fields, expand = list(fields), list(expand)
        if self.deployment == "datacenter":
            path = f"{self.api_prefix}/search"

            async def fetch_dc(paging: dict[str, Any]) -> Any:
                body = {"jql": jql, "fields": fields, "expand": expand, **paging}
                return await self.request_json("POST", path, json=body, kind="search")

            pages = offset_pages(fetch_dc, page_size=page_size, items_key="issues",
                                 where=f"POST {path}")
        else:
            path = f"{self.api_prefix}/search/jql"

            async def fetch_cloud(paging: dict[str, Any]) -> Any:
                body: dict[str, Any] = {"jql": jql, "fields": fields, **paging}
                if expand:
                    body["expand"] = ",".join(expand)
                return await self.request_json("POST", path, json=body, kind="search")

            pages = token_pages(fetch_cloud, page_size=page_size, where=f"POST {path}")
        async for page in pages:
            yield page

    async def count_issues(self, jql: str) -> int:
        """How many issues match: approximate-count on Cloud, a zero-row search on Data Center."""
        if self.deployment == "datacenter":
            path = f"{self.api_prefix}/search"
            body = await self.request_json(
                "POST", path, json={"jql": jql, "maxResults": 0, "fields": ["id"]}, kind="count"
            )
            key = "total"
        else:
            path = f"{self.api_prefix}/search/approximate-count"
            body = await self.request_json("POST", path, json={"jql": jql}, kind="count")
            key = "count"
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, int):
            raise JiraResponseError(f"answer has no integer `{key}`", method="POST", path=path)
        return value

    async def issue_ids(self, jql: str, page_size: int | None = None) -> AsyncIterator[str]:
        """The ids of every issue matching `jql`, cheaply (fields=id, thousands per page), in
        ascending id order (a keyset walk: see `keyset_search_pages`)."""
        async for page in self.issue_id_pages(jql, page_size):
            for issue_id in page:
                yield str(issue_id)

    async def issue_id_pages(
        self, jql: str, page_size: int | None = None
    ) -> AsyncIterator[list[int]]:
        """The pages of `issue_ids`, as ints."""
        size = page_size or (DC_ID_PAGE_SIZE if self.deployment == "datacenter" else ID_PAGE_SIZE)
        async for page in self.keyset_search_pages(jql, fields=("id",), page_size=size):
            yield [int(issue["id"]) for issue in page]

    async def keyset_search_pages(
        self,
        jql: str,
        fields: Sequence[str] = ("*all",),
        expand: Sequence[str] = (),
        page_size: int = FULL_PAGE_SIZE,
        *,
        after: int | None = None,
        position: KeysetPosition | None = None,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The issues matching `jql` in pages ordered by id, each page asked for as
        `id > <last id walked>` (Cloud and Data Center alike): issues edited, created or deleted
        during the walk neither skip nor repeat another, and an answer that breaks the chain
        raises JiraPaginationError naming the endpoint (see `keyset_pages`, which also says
        what `after` and `position` are)."""
        fields, expand = list(fields), list(expand)
        if self.deployment == "datacenter":
            path = f"{self.api_prefix}/search"

            async def fetch_dc(after: int | None) -> Any:
                body = {"jql": keyset_jql(jql, after), "fields": fields, "expand": expand,
                        "startAt": 0, "maxResults": page_size}
                return await self.request_json("POST", path, json=body, kind="search")

            pages = keyset_pages(fetch_dc, page_size=page_size, style="offset",
                                 where=f"POST {path}", after=after, position=position)
        else:
            path = f"{self.api_prefix}/search/jql"

            async def fetch_cloud(after: int | None) -> Any:
                body: dict[str, Any] = {"jql": keyset_jql(jql, after), "fields": fields,
                                        "maxResults": page_size}
                if expand:
                    body["expand"] = ",".join(expand)
                return await self.request_json("POST", path, json=body, kind="search")

            pages = keyset_pages(fetch_cloud, page_size=page_size, style="token",
                                 where=f"POST {path}", after=after, position=position)
        async for page in pages:
            yield page

    async def issues_by_id(
        self,
        issue_ids: Sequence[str],
        fields: Sequence[str] = ("*all",),
        expand: Sequence[str] = (),
    ) -> AsyncIterator[IssueBatch]:
        """The issues among `issue_ids` that exist and that the account can see, 100 a request
        (Cloud `POST /issue/bulkfetch`; Data Center an `id in (...)` search that tolerates ids
        that no longer exist). Ids Jira could not answer for right now come back `unavailable`:
        neither present nor proven absent."""
        ids = [str(issue_id) for issue_id in issue_ids]
        for issue_id in ids:
            if not issue_id.isdigit():
                raise ValueError(f"not a Jira issue id: {issue_id!r}")
        for start in range(0, len(ids), BULK_FETCH_SIZE):
            chunk = ids[start : start + BULK_FETCH_SIZE]
            if self.deployment == "datacenter":
                path = f"{self.api_prefix}/search"
                request: dict[str, Any] = {
                    "jql": f"id in ({', '.join(chunk)}) ORDER BY id ASC", "fields": list(fields),
                    "expand": list(expand), "startAt": 0, "maxResults": len(chunk),
                    "validateQuery": False,
                }
            else:
                path = f"{self.api_prefix}/issue/bulkfetch"
                request = {"issueIdsOrKeys": chunk, "fields": list(fields),
                           "expand": list(expand)}
            body = await self.request_json("POST", path, json=request, kind="search")
            issues = body.get("issues") if isinstance(body, dict) else None
            if not isinstance(issues, list):
                raise JiraResponseError("answer has no list `issues`", method="POST", path=path)
            errors = body.get("issueErrors") or []
            unavailable = [str(error.get("id")) for error in errors if isinstance(error, dict)]
            yield IssueBatch(issues, unavailable)

    async def search_window(
        self,
        window: IssueWindow,
        *,
        projects: Sequence[str] | None = None,
        jql: str | None = None,
        fields: Sequence[str] = ("*all",),
        expand: Sequence[str] = (),
        parallelism: int | None = None,
        page_size: int = FULL_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every issue updated in `window` (optionally limited to projects and user JQL).

        The first page is asked for before anything else: a window it holds whole (an empty
        partition, most daily ones) costs that one request. Past it, one approximate count
        decides whether splitting the rest pays off: the rest is cut into up to
        `parallelism` (default: the limiter's in-flight bound) equal sub-windows walked
        concurrently, so latency overlaps while the limiter keeps the pace, but only as many as
        hold two pages each on average. Issues cluster in time (a delta's recently touched issues
        sit in its last slice), so a sub-window of fewer pages mostly adds a near-empty page of
        its own. Sub-windows split on `updated` in epoch ms and are half-open, and each is a
        keyset walk by id (`keyset_search_pages`), so an issue that does not change during the
        walk is fetched exactly once whatever else changes (one that changes may move
        between sub-windows: writes are idempotent). The sub-windows start above the first
        page's last id (that page held the window's lowest ids). At most about two pages per
        sub-window are held.
        """
        parts = max(1, parallelism or self.limiter.max_in_flight)
        whole = build_issue_jql(window, projects=projects, user_jql=jql)
        position = KeysetPosition()
        async with aclosing(
            self.keyset_search_pages(whole, fields, expand, page_size, position=position)
        ) as unsplit:
            async for page in unsplit:
                for issue in page:
                    yield issue
                if position.last or parts <= 1:
                    continue
                total = await self.count_issues(whole)
                parts = min(parts, (total - len(page)) // (2 * page_size))
                if parts > 1:
                    break  # the rest in sub-windows, below
                parts = 1  # the rest in this walk
            else:
                return
        walks = [
            self.keyset_search_pages(
                build_issue_jql(sub, projects=projects, user_jql=jql), fields, expand, page_size,
                after=position.after,
            )
            for sub in window.split(parts)
        ]
        # aclosing: a consumer that stops early must cancel the sub-window walks right away.
        # One queued page: each walk waiting to hand over holds its own page already, and a
        # page of issues with changelogs is ~4 MB as Python objects (memory_bench).
        async with aclosing(merge_pages(walks, max_buffered=1)) as pages:
            async for page in pages:
                for issue in page:
                    yield issue

    async def sprint_issues(
        self, sprint_id: str, page_size: int = 50
    ) -> AsyncIterator[tuple[str, str]]:
        """(id, key) of each issue in a sprint now (Jira Software's `/sprint/{id}/issue`, the
        same on Cloud and Data Center): what the sprint membership check compares with."""
        path = f"/rest/agile/1.0/sprint/{sprint_id}/issue"
        async for page in offset_pages(self._getter(path, {"fields": "id"}),
                                       page_size=page_size, items_key="issues",
                                       where=f"GET {path}"):
            for issue in page:
                yield str(issue["id"]), str(issue.get("key") or "")

    # --- plumbing -------------------------------------------------------------------------

    def _getter(self, path: str, extra: Mapping[str, Any] | None = None) -> Any:
        async def fetch(paging: dict[str, Any]) -> Any:
            return await self.request_json("GET", path, params={**(extra or {}), **paging})

        return fetch

    async def _array(self, method: str, path: str) -> list[dict[str, Any]]:
        body = await self.request_json(method, path)
        if not isinstance(body, list):
            raise JiraResponseError("expected a JSON array", method=method, path=path)
        return body


async def _pages_until_empty(
    fetch: Any, page_size: int, *, where: str, max_pages: int = 100_000
) -> AsyncIterator[dict[str, Any]]:
    """Bare-array pages from startAt 0 until an empty page, each user once.

    A page that brings nobody new means the server ignores startAt (the walk would loop), so
    it raises instead of ending or going on.
    """
    seen: set[str] = set()
    start_at = 0
    for _ in range(max_pages):
        page = await fetch({"startAt": start_at, "maxResults": page_size})
        if not isinstance(page, list):
            raise JiraPaginationError(f"{where}: expected a JSON array, got {type(page).__name__}")
        if not page:
            return
        fresh = []
        for user in page:
            ident = _user_identity(user)
            if ident not in seen:
                seen.add(ident)
                fresh.append(user)
        if not fresh:
            raise JiraPaginationError(
                f"{where}: the page at startAt={start_at} repeats users already listed: "
                "the pages would never end"
            )
        for user in fresh:
            yield user
        start_at += len(page)
    raise JiraPaginationError(f"{where}: more than {max_pages} pages, giving up")


def _user_identity(user: Any) -> str:
    if isinstance(user, dict):
        for field in ("accountId", "key", "name"):
            if user.get(field):
                return str(user[field])
    return orjson.dumps(user, option=orjson.OPT_SORT_KEYS).decode()


async def merge_pages(
    walks: Iterable[AsyncIterator[list[Any]]], *, max_buffered: int = 4,
    max_running: int | None = None,
) -> AsyncGenerator[list[Any], None]:
    """Pages of several walks, as they arrive; a failing walk stops all of them.

    The queue is bounded, so walks pause when the consumer is slow: memory stays at a few pages.
    `max_running`: at most that many walks are under way at once, the next one starting as one
    ends (hundreds of short walks, one per project, then hold a few pages, not one each).
    Closing this iterator early cancels the walks.
    """
    walks = list(walks)
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=max(1, max_buffered))

    async def pump(walk: AsyncIterator[list[Any]]) -> None:
        try:
            async for page in walk:
                await queue.put(("page", page))
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put(("error", error))
            return
        await queue.put(("done", None))

    tasks: list[asyncio.Task[None]] = []

    def start_next() -> bool:
        if len(tasks) == len(walks):
            return False
        tasks.append(asyncio.create_task(pump(walks[len(tasks)])))
        return True

    width = len(walks) if max_running is None else max(1, max_running)
    while len(tasks) < width and start_next():
        pass
    try:
        running = len(tasks)
        while running:
            kind, value = await queue.get()
            if kind == "done":
                running -= 1
                if start_next():
                    running += 1
            elif kind == "error":
                raise value
            else:
                yield value
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for walk in walks:
            aclose = getattr(walk, "aclose", None)
            if aclose is not None:
                await aclose()


__all__ = ["ClientCounters", "IssueBatch", "JiraClient", "merge_pages"]
