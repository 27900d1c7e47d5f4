"""The fake's HTTP surface: Jira Cloud REST v3 and v2, Data Center v2, OAuth 3LO, /_fake admin."""

from __future__ import annotations

import asyncio
import base64
import binascii
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jira_pipeline.fakejira.agile import AGILE_ENDPOINTS, agile_admin_routes
from jira_pipeline.fakejira.comments import COMMENT_ORDERS, comment_admin_routes, comment_page
from jira_pipeline.fakejira.dataset import (
    FIELD_IDS,
    FIELD_NAMES,
    FIELDS,
    NAVIGABLE_FIELD_IDS,
    Issue,
)
from jira_pipeline.fakejira.field_trash import field_trash_routes
from jira_pipeline.fakejira.history import (
    ChangelogRequestError,
    bulk_changelog_page,
    configure_changelog,
)
from jira_pipeline.fakejira.jql import JqlError
from jira_pipeline.fakejira.limits import GATEWAY_502, GATEWAY_503, RateDecision
from jira_pipeline.fakejira.links import LINK_TYPE_ENDPOINTS, link_admin_routes
from jira_pipeline.fakejira.oauth import SCOPES, OAuthError
from jira_pipeline.fakejira.project_parts import (
    CLOUD_PROJECT_PART_ENDPOINTS,
    DATACENTER_PROJECT_PART_ENDPOINTS,
    listed_projects,
    project_part_admin_routes,
)
from jira_pipeline.fakejira.reference import (
    CLOUD_REFERENCE_ENDPOINTS,
    DATACENTER_REFERENCE_ENDPOINTS,
    reference_admin_routes,
)
from jira_pipeline.fakejira.render import SiteRenderer, jira_time
from jira_pipeline.fakejira.site import AdminError, FakeJiraSite, SearchResult
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms

JSON = "application/json;charset=UTF-8"
REMOVED_SEARCH = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
SEARCH_CAP = 100  # full issues per page
SEARCH_CAP_IDS = 5000  # when only id/key are asked for
DC_SEARCH_CAP = 1000


class ApiError(Exception):
    """An answer in Jira's ErrorCollection shape."""

    def __init__(self, status: int, *messages: str, errors: dict | None = None) -> None:
        super().__init__("; ".join(messages))
        self.status = status
        self.body = {"errorMessages": list(messages), "errors": errors or {}}


@dataclass
class Call:
    """One authenticated API request, with what the handler needs to answer it."""

    request: Request
    site: FakeJiraSite
    renderer: SiteRenderer
    api: str  # "3" (Cloud) or "2" (Cloud's plain-text twin, or Data Center)

    @property
    def cloud(self) -> bool:
        return self.site.config.mode == "cloud"


Handler = Callable[[Call], Awaitable[object]]


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"The '{name}' parameter must be an integer, not '{raw}'.") from None


def _credential(request: Request) -> str:
    host = request.client.host if request.client else ""
    return request.headers.get("authorization") or f"anonymous:{host}"


def _check_auth(request: Request, site: FakeJiraSite, scheme: str) -> None:
    """401 unless the request carries the credential this surface takes."""
    header = request.headers.get("authorization", "")
    config = site.config
    if scheme == "basic":
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded == f"{config.email}:{config.api_token}":
                return
    elif scheme == "pat":
        if header[:7].lower() == "bearer " and header[7:].strip() == config.pat:
            return
    elif scheme == "oauth":
        if header[:7].lower() == "bearer " and site.oauth.check(header[7:].strip(),
                                                                  site.clock.now_ms()):
            return
    raise ApiError(401, NOT_AUTHENTICATED)


def _ratelimit_headers(decision: RateDecision) -> dict[str, str]:
    # Jira sends the reset moment as an ISO-8601 UTC timestamp, in real (not fake) time.
    reset = datetime.now(tz=UTC) + timedelta(seconds=decision.reset_in_s)
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
        # Jira flags the last fifth of the budget so clients can slow down before a 429.
        "X-RateLimit-NearLimit": "true" if decision.remaining < decision.limit * 0.2 else "false",
    }


async def _latency(site: FakeJiraSite) -> None:
    # A sleep on the event loop, never a blocking one: concurrent clients' waits overlap.
    if site.knobs.latency_ms > 0:
        latency_ms = site.knobs.latency_ms
        await asyncio.sleep(latency_ms / 1000)
        site.latency_waited_ms += latency_ms  # counted once waited: tests read it, not a timer


def api_route(path: str, handler: Handler, *, api: str, scheme: str,
              methods: tuple[str, ...] = ("GET",), site: FakeJiraSite) -> Route:
    """Wrap a handler with what every Jira answer goes through: latency, limits, faults, auth."""

    async def endpoint(request: Request) -> Response:
        status, response = await _answer(request)
        site.requests[f"{request.method} {path}"][status] += 1
        return response

    async def _answer(request: Request) -> tuple[int, Response]:
        knobs = site.knobs
        await _latency(site)
        headers: dict[str, str] = {}
        if knobs.rate_limit > 0:
            decision = site.limiter.check(_credential(request))
            if decision.inside_retry_window:
                site.in_retry_window += 1
            headers = _ratelimit_headers(decision)
            if not decision.allowed:
                site.rate_limited += 1
                headers["Retry-After"] = str(decision.retry_after_s)
                headers["RateLimit-Reason"] = "jira-burst-based"
                body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
                return 429, json_response(body, 429, headers)
        fault = site.faults.pick()
        if fault is not None:
            site.faults_served += 1
            if fault == 500:
                body = {"errorMessages": ["Internal server error"], "errors": {}}
                return 500, json_response(body, 500)
            html = GATEWAY_503 if fault == 503 else GATEWAY_502
            return fault, Response(html, status_code=fault, media_type="text/html")
        try:
            if scheme == "oauth" and request.path_params.get("cloud_id") != site.cloud_id:
                raise ApiError(404, "No site found for this cloud id.")
            _check_auth(request, site, scheme)
            base = str(request.base_url).rstrip("/")
            if scheme == "oauth":
                base = f"{base}/ex/jira/{site.cloud_id}"
            call = Call(request, site, site.renderer(base, api), api)
            result = await handler(call)
        except ApiError as error:
            extra = dict(headers)
            if error.status == 401:
                extra["WWW-Authenticate"] = 'Basic realm="protected-area"' if scheme == "basic" \
                    else 'Bearer realm="protected-area"'
            return error.status, json_response(error.body, error.status, extra)
        if isinstance(result, Response):
            return result.status_code, result
        payload = orjson.dumps(result)
        if knobs.malformed_json_next > 0:
            # One-shot broken answer: the body is cut mid-document, as a dropped proxy might.
            knobs.malformed_json_next -= 1
            payload = payload[: max(1, len(payload) // 2)]
        return 200, Response(payload, media_type=JSON, headers=headers)

    return Route(path, endpoint, methods=list(methods))


# --- Cloud v3 and Data Center v2 handlers ---------------------------------------------------


async def myself(call: Call) -> object:
    return call.renderer.myself(call.site.myself_index())


async def server_info(call: Call) -> object:
    now = call.site.clock.now_ms()
    cloud = call.cloud
    base = str(call.request.base_url).rstrip("/")
    return {
        "baseUrl": base,
        "displayUrl": base,
        "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.2",
        "versionNumbers": [1001, 0, 0] if cloud else [9, 12, 2],
        "deploymentType": "Cloud" if cloud else "Server",
        "buildNumber": 100284 if cloud else 9120002,
        "buildDate": "2025-01-06T00:00:00.000+0000",
        "serverTime": jira_time(now, 0),
        "scmInfo": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "serverTitle": "Jira",
        "serverTimeZone": "Etc/UTC",
    }


async def project_search(call: Call) -> object:
    request, site = call.request, call.site
    start = max(0, _int_param(request, "startAt", 0))
    size = min(max(1, _int_param(request, "maxResults", 50)), 50)
    statuses = {s.strip() for v in request.query_params.getlist("status") for s in v.split(",")
                if s.strip()} or {"live"}
    indexes = listed_projects(site, statuses)
    projects = site.data.projects
    keys = {k.strip().upper() for v in request.query_params.getlist("keys") for k in v.split(",")
            if k.strip()}
    ids = {i.strip() for v in request.query_params.getlist("id") for i in v.split(",") if i.strip()}
    query = (request.query_params.get("query") or "").lower()
    if keys:
        indexes = [i for i in indexes if projects[i].key in keys]
    if ids:
        indexes = [i for i in indexes if projects[i].id in ids]
    if query:
        indexes = [i for i in indexes if query in projects[i].key.lower()
                   or query in projects[i].name.lower()]
    order = request.query_params.get("orderBy", "key")
    reverse = order.startswith("-")
    name = order.lstrip("+-")
    # ids sort as numbers: zero-padded so one key type serves every order
    sort_value: Callable[[int], str] | None = {
        "key": lambda i: projects[i].key, "name": lambda i: projects[i].name,
        "id": lambda i: projects[i].id.zfill(20),
    }.get(name)
    if sort_value is None:
        raise ApiError(400, f"Invalid orderBy parameter: {order}")
    indexes = sorted(indexes, key=sort_value, reverse=reverse)
    page = indexes[start:start + size]
    is_last = start + size >= len(indexes)
    base = call.renderer.rest
    params = {k: v for k, v in request.query_params.items() if k not in ("startAt", "maxResults")}
    body: dict = {
        "self": f"{base}/project/search?"
                f"{urlencode({**params, 'startAt': start, 'maxResults': size})}",
        "maxResults": size,
        "startAt": start,
        "total": len(indexes),
        "isLast": is_last,
        "values": [call.renderer.project(i) for i in page],
    }
    if not is_last:
        body["nextPage"] = (f"{base}/project/search?"
                            f"{urlencode({**params, 'startAt': start + size, 'maxResults': size})}")
    return body


async def project_get(call: Call) -> object:
    key = call.request.path_params["key"]
    site = call.site
    for index, project in enumerate(site.data.projects):
        if key.upper() == project.key or key == project.id:
            if project.key in site.knobs.forbidden_projects:
                raise ApiError(403, "You do not have permission to view this project.")
            return call.renderer.project(index)
    raise ApiError(404, f"No project could be found with key '{key}'.")


async def project_list(call: Call) -> object:
    archived = _bool_param(call.request, "includeArchived", False)
    return [call.renderer.project(i)
            for i in listed_projects(call.site, {"live", "archived"} if archived else {"live"})]


async def statuses_search(call: Call) -> object:
    request, site = call.request, call.site
    start = max(0, _int_param(request, "startAt", 0))
    size = min(max(1, _int_param(request, "maxResults", 200)), 200)
    statuses = site.data.statuses
    chosen = list(range(len(statuses)))
    project_id = request.query_params.get("projectId")
    if project_id:
        project = next((i for i, p in enumerate(site.data.projects) if p.id == project_id), None)
        if project is None:
            raise ApiError(400, f"The project with id {project_id} does not exist.")
        chosen = [i for i in chosen if statuses[i].project in (None, project)]
    text = (request.query_params.get("searchString") or "").lower()
    if text:
        chosen = [i for i in chosen if text in statuses[i].name.lower()]
    category = request.query_params.get("statusCategory")
    if category:
        chosen = [i for i in chosen if statuses[i].category == category.upper()]
    page = chosen[start:start + size]
    is_last = start + size >= len(chosen)
    base = f"{call.renderer.rest}/statuses/search"
    body: dict = {
        "self": f"{base}?startAt={start}&maxResults={size}",
        "maxResults": size,
        "startAt": start,
        "total": len(chosen),
        "isLast": is_last,
        "values": [call.renderer.status_search_item(statuses[i]) for i in page],
    }
    if not is_last:
        body["nextPage"] = f"{base}?startAt={start + size}&maxResults={size}"
    return body


async def status_list(call: Call) -> object:
    return list(call.renderer.statuses)


async def users_search(call: Call) -> object:
    start = max(0, _int_param(call.request, "startAt", 0))
    size = min(max(0, _int_param(call.request, "maxResults", 50)), 1000)
    count = len(call.site.data.users)
    return [call.renderer.listed_user(i) for i in range(start, min(count, start + size))]


def _bool_param(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false"):
        raise ApiError(400, f"The '{name}' parameter must be true or false, not '{raw}'.")
    return raw.lower() == "true"


async def dc_user_search(call: Call) -> object:
    """Data Center's user search: active users only unless asked (includeInactive defaults to
    false), at most `dc_user_search_cap` per answer whatever maxResults says, and nothing past
    the first `dc_user_search_limit` matches."""
    request = call.request
    username = request.query_params.get("username")
    if username is None:
        raise ApiError(400, "The username query parameter was not provided")
    config = call.site.config
    start = max(0, _int_param(request, "startAt", 0))
    size = min(max(0, _int_param(request, "maxResults", 50)), 1000, config.dc_user_search_cap)
    include_active = _bool_param(request, "includeActive", True)
    include_inactive = _bool_param(request, "includeInactive", False)
    users = call.site.data.users
    needle = username.lower()
    # "." is Data Center's idiom for "every user".
    chosen = [i for i, u in enumerate(users)
              if (include_active if u.active else include_inactive)
              and (needle == "." or needle in u.name.lower()
                   or needle in u.display_name.lower() or needle in (u.email or "").lower())]
    chosen = chosen[:config.dc_user_search_limit]
    return [call.renderer.listed_user(i) for i in chosen[start:start + size]]


async def user_get(call: Call) -> object:
    params = call.request.query_params
    if not call.cloud:
        # Data Center names a user by key or by username.
        wanted = params.get("key") or params.get("username")
        for index, user in enumerate(call.site.data.users):
            if wanted in (user.key, user.name):
                return call.renderer.listed_user(index)
        raise ApiError(404, f"The user named '{wanted}' does not exist")
    account = params.get("accountId") or params.get("username")
    for index, user in enumerate(call.site.data.users):
        if account in (user.account_id, user.name):
            return call.renderer.listed_user(index)
    raise ApiError(404, f"The user with account ID '{account}' does not exist")


async def field_list(call: Call) -> object:
    return call.renderer.field_details()


async def removed_search(call: Call) -> object:
    raise ApiError(410, REMOVED_SEARCH)


@dataclass
class SearchRequest:
    jql: str | None
    max_results: int | None
    fields: list[str]
    expand: set[str]
    next_page_token: str | None = None
    start_at: int = 0
    validate_query: bool = True  # Data Center: false lets unknown issue ids match nothing


async def _search_request(call: Call) -> SearchRequest:
    request = call.request
    if request.method == "POST":
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object.")
        fields = body.get("fields") or []
        if isinstance(fields, str):
            fields = [fields]
        expand = body.get("expand") or ""
        if isinstance(expand, list):
            expand = ",".join(expand)
        max_results = body.get("maxResults")
        if max_results is not None and not isinstance(max_results, int):
            raise ApiError(400, "maxResults must be an integer.")
        return SearchRequest(body.get("jql"), max_results, list(fields),
                             {e.strip() for e in str(expand).split(",") if e.strip()},
                             body.get("nextPageToken"), int(body.get("startAt") or 0),
                             body.get("validateQuery") not in (False, "false", "warn", "none"))
    params = request.query_params
    max_results = _int_param(request, "maxResults", -1)
    return SearchRequest(
        params.get("jql"),
        None if max_results == -1 else max_results,
        params.getlist("fields"),
        {e.strip() for v in params.getlist("expand") for e in v.split(",") if e.strip()},
        params.get("nextPageToken"),
        max(0, _int_param(request, "startAt", 0)),
        params.get("validateQuery", "strict").lower() not in ("false", "warn", "none"),
    )


def select_fields(specs: list[str], *, default: str) -> tuple[str, ...] | None:
    """Field ids to render from `fields` values; None when only id/key were asked for."""
    tokens = [t.strip() for spec in specs for t in spec.split(",") if t.strip()] or [default]
    include: list[str] = []
    exclude: set[str] = set()
    base: tuple[str, ...] = ()
    for token in tokens:
        if token == "*all":
            base = FIELD_IDS
        elif token == "*navigable":
            base = base or NAVIGABLE_FIELD_IDS
        elif token.startswith("-"):
            exclude.add(token[1:])
        elif token in FIELD_NAMES and token not in include:
            include.append(token)  # unknown names are ignored, as Jira ignores them
    if exclude and not base and not include and all(t.startswith("-") for t in tokens):
        base = NAVIGABLE_FIELD_IDS  # "-description" means navigable fields but description
    chosen = set(base) | set(include)
    wanted = tuple(f for f in FIELD_IDS if f in chosen and f not in exclude)
    if not wanted and not base:
        return None
    return wanted


def _token(jql: str | None, last: tuple[int, ...]) -> str:
    raw = orjson.dumps([zlib.crc32((jql or "").encode()), *last])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(jql: str | None, token: str) -> tuple[int, ...]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(raw, list) or raw[0] != zlib.crc32((jql or "").encode()):
            raise ValueError("token of another query")
        return tuple(int(v) for v in raw[1:])
    except (ValueError, TypeError, IndexError, binascii.Error, orjson.JSONDecodeError):
        raise ApiError(400, "The provided next page token is invalid or expired.") from None


def _cloud_page(site: FakeJiraSite, result: SearchResult, search: SearchRequest,
                size: int) -> tuple[list[Issue], str | None]:
    """One Cloud page and the token of the next: keyset (after a sort key) or offset paging."""
    token = search.next_page_token
    if site.paging_knobs.paging == "offset":
        start = _untoken_offset(search.jql, token) if token else 0
        page = result.issues[start:start + size]
        more = start + size < len(result.issues) and bool(page)
        return page, _offset_token(search.jql, start + size) if more else None
    after = _untoken(search.jql, token) if token else None
    page, last = site.page_after(result, after, size)
    return page, None if last is None else _token(search.jql, last)


def _offset_token(jql: str | None, offset: int) -> str:
    raw = orjson.dumps({"q": zlib.crc32((jql or "").encode()), "offset": offset})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken_offset(jql: str | None, token: str) -> int:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(raw, dict) or raw.get("q") != zlib.crc32((jql or "").encode()):
            raise ValueError("token of another query")
        return max(0, int(raw["offset"]))
    except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError):
        raise ApiError(400, "The provided next page token is invalid or expired.") from None


def _run_query(call: Call, jql: str | None, *, require_bound: bool,
               strict: bool = True) -> SearchResult:
    site = call.site
    try:
        query = site.parse(jql, require_bound=require_bound, strict=strict)
    except JqlError as error:
        raise ApiError(400, str(error)) from None
    forbidden = site.forbidden_in(query)
    if forbidden is not None:
        raise ApiError(
            403, f"You do not have permission to browse issues in project '{forbidden}'.")
    return site.run(jql, query)


def _render_issues(call: Call, issues: list, wanted: tuple[str, ...] | None,
                   expand: set[str]) -> list[dict]:
    renderer = call.renderer
    frozen = frozenset(expand)
    call.site.issues_served += len(issues)
    if wanted is None:
        # id/key-only pages: the light form that lets Jira serve 5000 per page.
        rest = renderer.rest
        return [{"id": str(i.id), "self": f"{rest}/issue/{i.id}", "key": i.key} for i in issues]
    return [renderer.issue(i, wanted, frozen) for i in issues]


def _names_and_schema(body: dict, wanted: tuple[str, ...] | None, expand: set[str]) -> None:
    if not wanted:
        return
    if "names" in expand:
        body["names"] = {f: FIELD_NAMES[f] for f in wanted}
    if "schema" in expand:
        schemas = {f.id: f.schema for f in FIELDS}
        body["schema"] = {f: schemas[f] for f in wanted}


async def search_jql(call: Call) -> object:
    search = await _search_request(call)
    wanted = select_fields(search.fields, default="id")
    issue_expand = search.expand - {"names", "schema"}
    if wanted is None and issue_expand:
        wanted = ()  # expanding changelog etc. needs the full bean, even with no fields
    cap = SEARCH_CAP_IDS if wanted is None else SEARCH_CAP
    size = min(max(1, search.max_results if search.max_results is not None else 50), cap)
    result = _run_query(call, search.jql, require_bound=True)
    page, next_token = _cloud_page(call.site, result, search, call.site.page_size(size))
    body: dict = {"issues": _render_issues(call, page, wanted, issue_expand)}
    glitch = call.site.glitch_for_page(next_token is not None)
    if glitch == "no_token":
        next_token = None
    elif glitch == "short":
        body["issues"] = body["issues"][max(1, len(page) // 2):]
    if next_token is not None:
        body["nextPageToken"] = next_token
    body["isLast"] = next_token is None and glitch is None
    _names_and_schema(body, wanted, search.expand)
    call.site.page_served(page)
    return body


async def approximate_count(call: Call) -> object:
    try:
        body = orjson.loads(await call.request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body is not valid JSON.") from None
    jql = body.get("jql") if isinstance(body, dict) else None
    result = _run_query(call, jql, require_bound=True)
    return {"count": max(0, len(result.issues) + call.site.paging_knobs.approximate_count_skew)}


async def dc_search(call: Call) -> object:
    search = await _search_request(call)
    wanted = select_fields(search.fields, default="*navigable")
    size = call.site.page_size(
        min(max(0, search.max_results if search.max_results is not None else 50), DC_SEARCH_CAP))
    result = _run_query(call, search.jql, require_bound=False, strict=search.validate_query)
    issues = result.issues
    page = issues[search.start_at:search.start_at + size]
    # A zero-row search is a count, not a page: a glitch waits for a page that has issues.
    glitch = call.site.glitch_for_page(bool(page) and search.start_at + len(page) < len(issues))
    if glitch == "no_token":
        page = []  # Data Center has no tokens: its pages end early instead
    elif glitch == "short":
        page = page[max(1, len(page) // 2):]
    body: dict = {
        "expand": "schema,names",
        "startAt": search.start_at,
        "maxResults": size,
        "total": len(issues),
        "issues": _render_issues(call, page, wanted or (), search.expand - {"names", "schema"}),
    }
    _names_and_schema(body, wanted, search.expand)
    call.site.page_served(page)
    return body


BULKFETCH_CAP = 100


async def issue_bulkfetch(call: Call) -> object:
    """POST /issue/bulkfetch: up to 100 issues by id or key; missing or hidden ones are left out."""
    try:
        body = orjson.loads(await call.request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body is not valid JSON.") from None
    wanted_ids = body.get("issueIdsOrKeys") if isinstance(body, dict) else None
    if not isinstance(wanted_ids, list) or not wanted_ids or \
            not all(isinstance(v, str) for v in wanted_ids):
        raise ApiError(400, "issueIdsOrKeys must be a non-empty list of issue ids or keys.")
    if len(wanted_ids) > BULKFETCH_CAP:
        raise ApiError(400, f"A maximum of {BULKFETCH_CAP} issues can be fetched at once.")
    fields = body.get("fields") or []
    expand = body.get("expand") or []
    if isinstance(fields, str) or isinstance(expand, str):
        raise ApiError(400, "fields and expand must be lists of strings.")
    wanted = select_fields(list(fields), default="*navigable")
    site = call.site
    found: list[Issue] = []
    seen: set[int] = set()
    for value in wanted_ids:
        issue = site.data.by_key.get(value.upper())
        if issue is None and value.isdigit():
            number = int(value) - 10_000
            issue = site.data.issues[number] if 0 <= number < len(site.data.issues) else None
        if issue is None or issue.deleted or issue.id in seen or \
                site.data.projects[issue.project].key in site.knobs.forbidden_projects:
            continue  # Jira leaves out issues that do not exist or that the user cannot see
        seen.add(issue.id)
        found.append(issue)
    issues = _render_issues(call, found, wanted or (), {str(e) for e in expand})
    return {"issues": issues, "issueErrors": []}


def _issue(call: Call) -> Issue:
    key = call.request.path_params["key"]
    site = call.site
    issue = site.data.by_key.get(key.upper())
    if issue is None and key.isdigit():
        number = int(key) - 10_000
        issue = site.data.issues[number] if 0 <= number < len(site.data.issues) else None
    if issue is None or issue.deleted or site.data.projects[issue.project].key in \
            site.knobs.forbidden_projects:
        raise ApiError(404, "Issue does not exist or you do not have permission to see it.")
    return issue


async def issue_get(call: Call) -> object:
    issue = _issue(call)
    params = call.request.query_params
    wanted = select_fields(params.getlist("fields"), default="*all")
    expand = {e.strip() for v in params.getlist("expand") for e in v.split(",") if e.strip()}
    call.site.issues_served += 1
    return call.renderer.issue(issue, wanted or (), frozenset(expand))


def _page(call: Call, items: list, key: str) -> dict:
    start = max(0, _int_param(call.request, "startAt", 0))
    size = min(max(1, _int_param(call.request, "maxResults", 100)), 5000)
    return {"startAt": start, "maxResults": size, "total": len(items),
            key: items[start:start + size]}


async def issue_comments(call: Call) -> object:
    issue = _issue(call)
    # The whole thread, paged (fakejira/comments.py): only the block embedded in the issue
    # stops at 20.
    request = call.request
    order = request.query_params.get("orderBy") or "created"
    if order not in COMMENT_ORDERS:
        raise ApiError(400, f"Invalid orderBy parameter: {order}")
    return comment_page(call.renderer, call.site.data, issue,
                        start=_int_param(request, "startAt", 0),
                        size=_int_param(request, "maxResults", 100), order=order,
                        expand=request.query_params.get("expand") or "")


async def issue_worklogs(call: Call) -> object:
    issue = _issue(call)
    block = call.renderer.worklogs(issue, limit=None)
    return _page(call, block["worklogs"], "worklogs")


async def issue_changelog(call: Call) -> object:
    issue = _issue(call)
    renderer = call.renderer
    histories = [renderer.history(h) for h in renderer.histories(issue)]
    start = max(0, _int_param(call.request, "startAt", 0))
    size = min(max(1, _int_param(call.request, "maxResults", 100)), 100)
    page = histories[start:start + size]
    body: dict = {"self": f"{renderer.rest}/issue/{call.request.path_params['key']}/changelog"
                  f"?startAt={start}&maxResults={size}",
                  "maxResults": size, "startAt": start, "total": len(histories),
                  "isLast": start + size >= len(histories), "values": page}
    if not body["isLast"]:
        body["nextPage"] = (f"{renderer.rest}/issue/{call.request.path_params['key']}/changelog"
                            f"?startAt={start + size}&maxResults={size}")
    return body


async def changelog_bulkfetch(call: Call) -> object:
    """POST /changelog/bulkfetch: the histories of up to 1,000 issues (fakejira/history.py)."""
    try:
        return bulk_changelog_page(call.site, call.renderer, await call.request.body())
    except ChangelogRequestError as error:
        raise ApiError(400, str(error)) from None


# --- OAuth 3LO ------------------------------------------------------------------------------


def oauth_routes(site: FakeJiraSite) -> list[Route]:
    async def authorize(request: Request) -> Response:
        params = request.query_params
        try:
            code = site.oauth.authorize(params.get("client_id"), params.get("redirect_uri"),
                                        params.get("scope"))
        except OAuthError as error:
            site.requests["GET /authorize"][error.status] += 1
            return json_response(error.body, error.status)
        site.requests["GET /authorize"][302] += 1
        query = {"code": code}
        if params.get("state") is not None:
            query["state"] = params["state"]
        separator = "&" if "?" in params["redirect_uri"] else "?"
        return RedirectResponse(f"{params['redirect_uri']}{separator}{urlencode(query)}", 302)

    async def token(request: Request) -> Response:
        await _latency(site)
        raw = await request.body()
        try:
            if request.headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                body = dict((await request.form()).items())
            else:
                body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            site.requests["POST /oauth/token"][400] += 1
            return json_response({"error": "invalid_request",
                                  "error_description": "Body must be JSON."}, 400)
        try:
            answer = site.oauth.grant(body, site.clock.now_ms(), site.knobs.token_ttl)
        except OAuthError as error:
            site.requests["POST /oauth/token"][error.status] += 1
            return json_response(error.body, error.status)
        site.requests["POST /oauth/token"][200] += 1
        return json_response(answer)

    async def accessible_resources(request: Request) -> Response:
        await _latency(site)
        header = request.headers.get("authorization", "")
        if header[:7].lower() != "bearer " or not site.oauth.check(header[7:].strip(),
                                                                     site.clock.now_ms()):
            site.requests["GET /oauth/token/accessible-resources"][401] += 1
            return json_response({"code": 401, "message": "Unauthorized"}, 401)
        site.requests["GET /oauth/token/accessible-resources"][200] += 1
        base = str(request.base_url).rstrip("/")
        return json_response([{
            "id": site.cloud_id, "url": base, "name": "fake-jira",
            "scopes": SCOPES.split(), "avatarUrl": f"{base}/avatar.png",
        }])

    return [
        Route("/authorize", authorize, methods=["GET"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/token/accessible-resources", accessible_resources, methods=["GET"]),
    ]


# --- admin ----------------------------------------------------------------------------------


def admin_routes(site: FakeJiraSite) -> list[Route]:
    from jira_pipeline.fakejira.worklogs import worklog_admin_routes

    def admin(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except AdminError as error:
                return json_response({"errorMessages": [str(error)], "errors": {}}, error.status)
            except (ValueError, TypeError, KeyError) as error:
                return json_response({"errorMessages": [f"Bad admin request: {error}"],
                                      "errors": {}}, 400)
        return endpoint

    async def body_of(request: Request) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            raise AdminError(400, "Body must be a JSON object.")
        return body

    def summary(issue: Issue) -> dict:
        return {"id": str(issue.id), "key": issue.key, "updated": jira_time(issue.updated, 0)}

    async def issues(request: Request) -> Response:
        if request.method == "GET":
            return json_response(site.dump())
        body = await body_of(request)
        project_key = body.get("project_key") or body.get("projectKey")
        if not project_key:
            raise AdminError(400, "project_key is required")
        return json_response(summary(site.create_issue(str(project_key), body.get("fields"))), 201)

    async def touch(request: Request) -> Response:
        body = await body_of(request)
        return json_response(summary(site.touch_issue(request.path_params["key"],
                                                      body.get("fields"))))

    async def move(request: Request) -> Response:
        body = await body_of(request)
        project_key = body.get("project_key") or body.get("projectKey")
        if not project_key:
            raise AdminError(400, "project_key is required")
        return json_response(summary(site.move_issue(request.path_params["key"],
                                                     str(project_key))))

    async def status(request: Request) -> Response:
        body = await body_of(request)
        changed = site.change_status(request.path_params["id"], body.get("name"),
                                     body.get("category"))
        return json_response({"id": changed.id, "name": changed.name,
                              "category": changed.category})

    async def user(request: Request) -> Response:
        body = await body_of(request)
        changed = site.set_user_active(request.path_params["id"], body.get("active"))
        return json_response({"accountId": changed.account_id, "key": changed.key,
                              "name": changed.name, "active": changed.active})

    async def project(request: Request) -> Response:
        body = await body_of(request)
        changed = site.change_project(request.path_params["key"], body.get("key"),
                                      body.get("name"))
        return json_response({"id": changed.id, "key": changed.key, "name": changed.name})

    async def raw_fields(request: Request) -> Response:
        body = await body_of(request)
        fields, remove = body.get("fields") or {}, body.get("remove") or []
        if not isinstance(fields, dict) or not isinstance(remove, list):
            raise AdminError(400, "fields must be an object and remove a list of field names")
        issue = site.set_raw_fields(request.path_params["key"], fields, [str(f) for f in remove],
                                    reset=bool(body.get("reset")))
        return json_response(summary(issue))

    async def delete(request: Request) -> Response:
        site.delete_issue(request.path_params["key"])
        return Response(status_code=204)

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await body_of(request)
            if "advance_seconds" in body:
                site.clock.advance(float(body["advance_seconds"]))
            elif "now" in body:
                moment = parse_jira_datetime(str(body["now"]))
                if moment is None:
                    raise AdminError(400, "now must be an ISO-8601 timestamp")
                site.clock.set(moment)
            else:
                raise AdminError(400, "Give advance_seconds or now")
        now = site.clock.now()
        return json_response({"now": now.isoformat(), "epoch_ms": to_epoch_ms(now)})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            return json_response(site.configure(await body_of(request)))
        return json_response(site.knob_values())

    async def reset(request: Request) -> Response:
        site.reset()
        return Response(status_code=204)

    async def stats(request: Request) -> Response:
        return json_response(site.stats())

    async def changelog(request: Request) -> Response:
        return json_response(configure_changelog(site, await body_of(request)))

    return [
        Route("/_fake/issues", admin(issues), methods=["GET", "POST"]),
        Route("/_fake/issues/{key}/touch", admin(touch), methods=["POST"]),
        Route("/_fake/issues/{key}/move", admin(move), methods=["POST"]),
        Route("/_fake/issues/{key}/fields", admin(raw_fields), methods=["POST"]),
        Route("/_fake/issues/{key}", admin(delete), methods=["DELETE"]),
        Route("/_fake/statuses/{id}", admin(status), methods=["POST"]),
        Route("/_fake/users/{id}", admin(user), methods=["POST"]),
        Route("/_fake/projects/{key}", admin(project), methods=["POST"]),
        Route("/_fake/clock", admin(clock), methods=["GET", "POST"]),
        Route("/_fake/config", admin(config), methods=["GET", "POST"]),
        Route("/_fake/reset", admin(reset), methods=["POST"]),
        Route("/_fake/stats", admin(stats), methods=["GET"]),
        *comment_admin_routes(site),
        *field_trash_routes(site),
        *reference_admin_routes(site),
        *agile_admin_routes(site),
        *project_part_admin_routes(site),
        *link_admin_routes(site),
        Route("/_fake/changelog", admin(changelog), methods=["POST"]),
        *worklog_admin_routes(site, admin, body_of),
    ]


# --- assembly -------------------------------------------------------------------------------

CLOUD_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/myself", myself, ("GET",)),
    ("/serverInfo", server_info, ("GET",)),
    ("/project/search", project_search, ("GET",)),
    ("/project/{key}", project_get, ("GET",)),
    ("/statuses/search", statuses_search, ("GET",)),
    ("/status", status_list, ("GET",)),
    ("/users/search", users_search, ("GET",)),
    ("/user", user_get, ("GET",)),
    ("/search/jql", search_jql, ("GET", "POST")),
    ("/search/approximate-count", approximate_count, ("POST",)),
    ("/search", removed_search, ("GET", "POST")),
    ("/field", field_list, ("GET",)),
    ("/issue/bulkfetch", issue_bulkfetch, ("POST",)),
    ("/issue/{key}", issue_get, ("GET",)),
    ("/issue/{key}/comment", issue_comments, ("GET",)),
    ("/issue/{key}/worklog", issue_worklogs, ("GET",)),
    ("/issue/{key}/changelog", issue_changelog, ("GET",)),
    ("/changelog/bulkfetch", changelog_bulkfetch, ("POST",)),
)
DATACENTER_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/myself", myself, ("GET",)),
    ("/serverInfo", server_info, ("GET",)),
    ("/project", project_list, ("GET",)),
    ("/project/{key}", project_get, ("GET",)),
    ("/status", status_list, ("GET",)),
    ("/user/search", dc_user_search, ("GET",)),
    ("/user", user_get, ("GET",)),
    ("/search", dc_search, ("GET", "POST")),
    ("/field", field_list, ("GET",)),
    ("/issue/{key}", issue_get, ("GET",)),
    ("/issue/{key}/comment", issue_comments, ("GET",)),
    ("/issue/{key}/worklog", issue_worklogs, ("GET",)),
)


async def not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "Method Not Allowed" if status == 405 else "Not Found"
    return json_response({"errorMessages": [message], "errors": {}}, status)


def build_app(site: FakeJiraSite) -> Starlette:
    from jira_pipeline.fakejira.worklogs import WORKLOG_ENDPOINTS  # its handlers use Call

    routes: list[Route] = []
    if site.config.mode == "cloud":
        # Cloud serves v2 beside v3 (same operations, rich text as plain strings), for clients
        # written against v2 such as the Singer tap.
        for version in ("3", "2"):
            for suffix, handler, methods in (*CLOUD_ENDPOINTS, *WORKLOG_ENDPOINTS,
                                             *CLOUD_REFERENCE_ENDPOINTS,
                                             *CLOUD_PROJECT_PART_ENDPOINTS,
                                             *LINK_TYPE_ENDPOINTS):
                routes.append(api_route(f"/rest/api/{version}{suffix}", handler, api=version,
                                        scheme="basic", methods=methods, site=site))
                routes.append(api_route(f"/ex/jira/{{cloud_id}}/rest/api/{version}{suffix}",
                                        handler, api=version, scheme="oauth", methods=methods,
                                        site=site))
        routes.extend(oauth_routes(site))
        for suffix, handler, methods in AGILE_ENDPOINTS:  # the agile API renders issues as v2
            routes.append(api_route(f"/rest/agile/1.0{suffix}", handler, api="2",
                                    scheme="basic", methods=methods, site=site))
            routes.append(api_route(f"/ex/jira/{{cloud_id}}/rest/agile/1.0{suffix}", handler,
                                    api="2", scheme="oauth", methods=methods, site=site))
    else:
        for suffix, handler, methods in (*DATACENTER_ENDPOINTS, *DATACENTER_REFERENCE_ENDPOINTS,
                                         *DATACENTER_PROJECT_PART_ENDPOINTS,
                                         *LINK_TYPE_ENDPOINTS):
            routes.append(api_route(f"/rest/api/2{suffix}", handler, api="2", scheme="pat",
                                    methods=methods, site=site))
        for suffix, handler, methods in AGILE_ENDPOINTS:
            routes.append(api_route(f"/rest/agile/1.0{suffix}", handler, api="2", scheme="pat",
                                    methods=methods, site=site))
    routes.extend(admin_routes(site))
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
