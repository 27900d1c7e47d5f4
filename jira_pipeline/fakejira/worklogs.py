"""The fake's worklogs: the generated ones as ground truth, admin edits, and Jira's worklog feeds
(`/worklog/updated`, `/worklog/deleted`, `/worklog/list`)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.dataset import Dataset, Issue
from jira_pipeline.fakejira.render import _paragraphs, adf, jira_time
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms

if TYPE_CHECKING:
    from jira_pipeline.fakejira.app import Call
    from jira_pipeline.fakejira.site import FakeJiraSite

FEED_PAGE = 1000  # Jira's page of /worklog/updated and /worklog/deleted
LIST_MAX_IDS = 1000  # ids /worklog/list takes at most
# Neither feed lists the changes of the minute before the request (Jira's own rule).
FEED_LAG_MS = 60_000
ADDED_ID_BASE = 900_000_000  # ids of worklogs added through the admin API: above generated ones
_SECONDS = (900, 1800, 3600, 7200, 14400)


@dataclass(frozen=True)
class Worklog:
    """One worklog, compact; rendered to Jira's JSON on demand."""

    id: int
    issue: int  # the issue's number in the dataset
    author: int  # index into users
    created_ms: int
    updated_ms: int
    started_ms: int
    seconds: int
    comment: str
    offset: int


def generated(issue: Issue, users: int) -> list[Worklog]:
    """The worklogs an issue was generated with (the seeded past: the ground truth)."""
    total = issue.worklogs
    rng = random.Random(issue.seed ^ 0xBEEF)
    span = max(issue.seeded - issue.created, 1)
    out = []
    for i in range(total):
        author = rng.randrange(users)
        at = issue.created + span * (i + 1) // (total + 1)
        seconds = rng.choice(_SECONDS)
        comment = _paragraphs(rng, 1)[0]
        out.append(Worklog(issue.id * 100 + i, issue.num, author, at, at, at - seconds * 1000,
                           seconds, comment, issue.offset))
    return out


class WorklogBook:
    """Every worklog of a dataset: an issue's generated ones until an admin changes one of them
    (then the issue's own list), the deletions with their times, and the feed's order."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.changed: dict[int, list[Worklog]] = {}  # issue number -> its worklogs now
        self.deleted: list[tuple[int, int]] = []  # (deleted at ms, worklog id)
        self.added_issue: dict[int, int] = {}  # added worklog id -> issue number
        self.next_id = ADDED_ID_BASE
        self.version = 0
        # One-shot: {"worklog_id", "action": "edit" | "delete"} applied right after the next
        # /worklog/updated page is served, i.e. between a client's feed page and its list.
        self.change_after_feed_page: dict[str, str] | None = None
        # One-shot: the next request to this feed ("updated", "deleted" or "list") answers
        # with this HTTP status (an ErrorCollection), as a Jira refusing it would.
        self.fail_next: dict[str, int] = {}
        self._last: tuple[int, list[Worklog]] | None = None
        self._feed: tuple[tuple[int, int], list[tuple[int, int, int]]] | None = None

    def of(self, issue: Issue) -> list[Worklog]:
        found = self.changed.get(issue.num)
        if found is not None:
            return found
        # An issue is rendered with its worklog block and its timetracking one after the other:
        # the last generated list serves both (an unchanged issue's list never changes).
        if self._last is None or self._last[0] != issue.num:
            self._last = (issue.num, generated(issue, len(self.data.users)))
        return self._last[1]

    def find(self, worklog_id: int) -> Worklog | None:
        number = self.added_issue.get(worklog_id)
        if number is None and worklog_id < ADDED_ID_BASE:
            number = worklog_id // 100 - 10_000
        issues = self.data.issues
        if number is None or not 0 <= number < len(issues) or issues[number].deleted:
            return None
        return next((w for w in self.of(issues[number]) if w.id == worklog_id), None)

    def _own(self, issue: Issue) -> list[Worklog]:
        if issue.num not in self.changed:
            self.changed[issue.num] = list(generated(issue, len(self.data.users)))
        return self.changed[issue.num]

    def _bump(self) -> None:
        self.version += 1
        self._feed = None

    def add(self, issue: Issue, author: int, started_ms: int, seconds: int, comment: str,
            now: int) -> Worklog:
        worklog = Worklog(self.next_id, issue.num, author, now, now, started_ms, seconds,
                          comment, issue.offset)
        self.next_id += 1
        self.added_issue[worklog.id] = issue.num
        self._own(issue).append(worklog)
        self._bump()
        return worklog

    def edit(self, worklog: Worklog, now: int, *, issue: Issue | None = None,
             **changes: Any) -> Worklog:
        """A new version of `worklog` (updated now); `issue` moves it, keeping its id."""
        source = self.data.issues[worklog.issue]
        mine = self._own(source)
        mine[:] = [w for w in mine if w.id != worklog.id]
        target = issue or source
        edited = replace(worklog, issue=target.num, updated_ms=now, **changes)
        self._own(target).append(edited)
        if worklog.id >= ADDED_ID_BASE or target is not source:
            self.added_issue[worklog.id] = target.num
        self._bump()
        return edited

    def delete(self, worklog: Worklog, now: int) -> None:
        mine = self._own(self.data.issues[worklog.issue])
        mine[:] = [w for w in mine if w.id != worklog.id]
        self.added_issue[worklog.id] = -1  # found nowhere any more
        self.deleted.append((now, worklog.id))
        self._bump()

    def updated_feed(self) -> list[tuple[int, int, int]]:
        """(updated ms, worklog id, issue number) of every worklog of a live issue, oldest
        first; rebuilt only when worklogs or the issues changed."""
        key = (self.version, self.data.version)
        if self._feed is None or self._feed[0] != key:
            rows = [
                (w.updated_ms, w.id, issue.num)
                for issue in self.data.issues if not issue.deleted
                for w in self.of(issue)
            ]
            rows.sort()
            self._feed = (key, rows)
        return self._feed[1]


def worklog_book(data: Dataset) -> WorklogBook:
    if data.worklog_book is None:
        data.worklog_book = WorklogBook(data)
    book: WorklogBook = data.worklog_book
    return book


def live_worklogs(data: Dataset) -> int:
    """How many worklogs the site's live issues hold."""
    book = worklog_book(data)
    return sum(len(book.of(issue)) for issue in data.issues if not issue.deleted)


def spent(seconds: int) -> str:
    """Jira's `timeSpent`: `1d 2h 30m` (a day of 8 hours, a week of 5 days, as Jira counts)."""
    days, rest = divmod(seconds // 60, 8 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else ""]
    return " ".join(p for p in parts if p) or "0m"


def timetracking(book: WorklogBook, issue: Issue) -> dict[str, Any]:
    """The issue's `timetracking` field: time logged, or `{}` when none is (as Jira sends)."""
    total = sum(w.seconds for w in book.of(issue))
    return {"timeSpent": spent(total), "timeSpentSeconds": total} if total else {}


# --- HTTP: the feeds and /worklog/list ------------------------------------------------------


def _api_error(status: int, message: str) -> Exception:
    from jira_pipeline.fakejira.app import ApiError

    return ApiError(status, message)


def _since(call: Call) -> int:
    raw = call.request.query_params.get("since") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise _api_error(400, f"The 'since' parameter must be a UNIX time in ms, not '{raw}'.") \
            from None


def _visible(call: Call, issue: Issue) -> bool:
    site = call.site
    return not issue.deleted and \
        site.data.projects[issue.project].key not in site.knobs.forbidden_projects


def _feed_page(call: Call, path: str, rows: list[tuple[int, int]]) -> dict[str, Any]:
    """One ChangedWorklogs page of `rows` ((ms, worklog id), oldest first), from `since` on and
    without the last minute's, 1,000 at most; `nextPage` starts at the page's youngest."""
    since = _since(call)
    cutoff = call.site.clock.now_ms() - FEED_LAG_MS
    chosen = [row for row in rows if since <= row[0] <= cutoff]
    page, more = chosen[:FEED_PAGE], len(chosen) > FEED_PAGE
    expand = call.request.query_params.get("expand") or ""
    wants_properties = "properties" in expand.split(",")
    base = f"{call.renderer.rest}/worklog/{path}"
    extra = {"expand": expand} if expand else {}
    until = page[-1][0] if page else since
    body: dict[str, Any] = {
        "self": f"{base}?{urlencode({'since': since, **extra})}",
        "since": page[0][0] if page else since,
        "until": until,
        "lastPage": not more,
        "values": [{"worklogId": wid, "updatedTime": ms,
                    **({"properties": []} if wants_properties or path == "deleted" else {})}
                   for ms, wid in page],
    }
    if more:
        body["nextPage"] = f"{base}?{urlencode({'since': until, **extra})}"
    return body


def _failing(book: WorklogBook, feed: str) -> None:
    status = book.fail_next.pop(feed, None)
    if status is not None:
        raise _api_error(status, f"The worklog {feed} request was refused (a test's fault).")


async def worklogs_updated(call: Call) -> object:
    book = worklog_book(call.site.data)
    _failing(book, "updated")
    issues = call.site.data.issues
    rows = [(ms, wid) for ms, wid, number in book.updated_feed() if _visible(call, issues[number])]
    body = _feed_page(call, "updated", rows)
    change, book.change_after_feed_page = book.change_after_feed_page, None
    if change is not None:
        if change["action"] == "delete":
            delete_worklog(call.site, change["worklog_id"])
        else:
            edit_worklog(call.site, change["worklog_id"], {})
    return body


async def worklogs_deleted(call: Call) -> object:
    book = worklog_book(call.site.data)
    _failing(book, "deleted")
    return _feed_page(call, "deleted", sorted(book.deleted))


async def worklogs_list(call: Call) -> object:
    try:
        body = orjson.loads(await call.request.body() or b"null")
    except orjson.JSONDecodeError:
        raise _api_error(400, "Request body is not valid JSON.") from None
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids:
        raise _api_error(400, "The request must contain a list of worklog ids.")
    if len(ids) > LIST_MAX_IDS:
        raise _api_error(400, f"The request contains more than {LIST_MAX_IDS} worklog ids.")
    book = worklog_book(call.site.data)
    _failing(book, "list")
    found = []
    seen: set[int] = set()
    for raw in ids:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _api_error(400, f"Worklog ids must be integers, not {raw!r}.")
        if raw in seen:
            continue
        seen.add(raw)
        worklog = book.find(raw)
        # Worklogs that do not exist (deleted since they were listed) or that the user cannot
        # see are left out, as Jira leaves them out: not an error.
        if worklog is not None and _visible(call, call.site.data.issues[worklog.issue]):
            found.append(worklog)
    return [call.renderer.worklog(w) for w in found]


WORKLOG_ENDPOINTS: tuple[tuple[str, Callable[[Call], Awaitable[object]], tuple[str, ...]], ...] = (
    ("/worklog/updated", worklogs_updated, ("GET",)),
    ("/worklog/deleted", worklogs_deleted, ("GET",)),
    ("/worklog/list", worklogs_list, ("POST",)),
)


# --- admin: add, edit, move and delete worklogs ---------------------------------------------


def _changed_issue(site: FakeJiraSite, issue: Issue, now: int) -> None:
    """A worklog change is an issue change: `updated` moves, as Jira moves it."""
    site._before_change(issue)  # the site's own bookkeeping: search sees it after its lag
    issue.updated = max(now, issue.updated + 1)
    issue.worklogs = len(worklog_book(site.data).of(issue))
    site._changed(issue)


def _user_index(site: FakeJiraSite, account: object) -> int:
    if account is None:
        return site.myself_index()
    found = next((i for i, u in enumerate(site.data.users)
                  if str(account) in (u.account_id, u.key, u.name)), None)
    if found is None:
        from jira_pipeline.fakejira.site import AdminError

        raise AdminError(400, f"No user {account!r}")
    return found


def _started(value: object, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        return value
    moment = parse_jira_datetime(str(value))
    if moment is None:
        raise ValueError("started must be an ISO-8601 timestamp or epoch ms")
    return to_epoch_ms(moment)


def _worklog(site: FakeJiraSite, worklog_id: str) -> Worklog:
    from jira_pipeline.fakejira.site import AdminError

    found = worklog_book(site.data).find(int(worklog_id)) if worklog_id.isdigit() else None
    if found is None:
        raise AdminError(404, f"No worklog {worklog_id!r}")
    return found


def add_worklog(site: FakeJiraSite, key: str, body: dict) -> Worklog:
    issue = site.issue_by_key(key)
    now = site.clock.now_ms()
    seconds = int(body.get("timeSpentSeconds") or body.get("seconds") or 3600)
    if seconds <= 0:
        raise ValueError("timeSpentSeconds must be positive")
    worklog = worklog_book(site.data).add(
        issue, _user_index(site, body.get("author")),
        _started(body.get("started"), now - seconds * 1000), seconds,
        str(body.get("comment") or "Logged through the fake's admin API."), now)
    _changed_issue(site, issue, now)
    return worklog


def edit_worklog(site: FakeJiraSite, worklog_id: str, body: dict) -> Worklog:
    """Change a worklog's time, start or comment, or move it to another issue (`issue_key`)."""
    worklog = _worklog(site, worklog_id)
    book = worklog_book(site.data)
    source = site.data.issues[worklog.issue]
    target = site.issue_by_key(str(body["issue_key"])) if body.get("issue_key") else None
    now = max(site.clock.now_ms(), worklog.updated_ms + 1)
    changes: dict[str, Any] = {}
    if "timeSpentSeconds" in body:
        seconds = int(body["timeSpentSeconds"])
        if seconds <= 0:
            raise ValueError("timeSpentSeconds must be positive")
        changes["seconds"] = seconds
    if "started" in body:
        changes["started_ms"] = _started(body["started"], worklog.started_ms)
    if "comment" in body:
        changes["comment"] = str(body["comment"])
    if not changes and target is None:
        changes["seconds"] = worklog.seconds + 900  # a bare edit still changes something
    edited = book.edit(worklog, now, issue=target, **changes)
    _changed_issue(site, source, now)
    if target is not None and target is not source:
        _changed_issue(site, target, now)
    return edited


def delete_worklog(site: FakeJiraSite, worklog_id: str) -> None:
    worklog = _worklog(site, worklog_id)
    issue = site.data.issues[worklog.issue]
    now = site.clock.now_ms()
    worklog_book(site.data).delete(worklog, now)
    _changed_issue(site, issue, now)


def worklog_admin_routes(
    site: FakeJiraSite,
    admin: Callable[[Callable[[Request], Awaitable[Response]]], Callable],
    body_of: Callable[[Request], Awaitable[dict]],
) -> list[Route]:
    from jira_pipeline.fakejira.app import json_response

    def summary(worklog: Worklog) -> dict:
        issue = site.data.issues[worklog.issue]
        return {"id": str(worklog.id), "issueId": str(issue.id), "issueKey": issue.key,
                "timeSpentSeconds": worklog.seconds,
                "updated": jira_time(worklog.updated_ms, 0),
                "issueUpdated": jira_time(issue.updated, 0)}

    async def add(request: Request) -> Response:
        return json_response(summary(add_worklog(site, request.path_params["key"],
                                                 await body_of(request))), 201)

    async def edit(request: Request) -> Response:
        if request.method == "DELETE":
            delete_worklog(site, request.path_params["id"])
            return Response(status_code=204)
        return json_response(summary(edit_worklog(site, request.path_params["id"],
                                                  await body_of(request))))

    async def after_feed_page(request: Request) -> Response:
        body = await body_of(request)
        if body.get("action") not in ("edit", "delete"):
            raise ValueError('action must be "edit" or "delete"')
        worklog = _worklog(site, str(body.get("worklog_id")))
        worklog_book(site.data).change_after_feed_page = {"worklog_id": str(worklog.id),
                                                          "action": str(body["action"])}
        return json_response({"worklog_id": str(worklog.id), "action": body["action"]})

    async def fail_next(request: Request) -> Response:
        body = await body_of(request)
        feed, status = str(body.get("feed")), int(body.get("status", 400))
        if feed not in ("updated", "deleted", "list") or not 400 <= status < 600:
            raise ValueError('feed must be "updated", "deleted" or "list", status 4xx or 5xx')
        worklog_book(site.data).fail_next[feed] = status
        return json_response({"feed": feed, "status": status})

    async def listing(request: Request) -> Response:
        issue = site.issue_by_key(request.path_params["key"])
        return json_response([summary(w) for w in worklog_book(site.data).of(issue)])

    return [
        Route("/_fake/issues/{key}/worklogs", admin(add), methods=["POST"]),
        Route("/_fake/issues/{key}/worklogs", admin(listing), methods=["GET"]),
        Route("/_fake/worklogs/{id}", admin(edit), methods=["POST", "DELETE"]),
        Route("/_fake/worklog_feed/change_after_page", admin(after_feed_page), methods=["POST"]),
        Route("/_fake/worklog_feed/fail_next", admin(fail_next), methods=["POST"]),
    ]


def render_worklog(renderer: Any, worklog: Worklog) -> dict[str, Any]:
    """A Worklog as /issue/{id}/worklog, /worklog/list and the embedded block send it."""
    author = renderer.users[worklog.author]
    issue_id = 10_000 + worklog.issue
    return {
        "self": f"{renderer.rest}/issue/{issue_id}/worklog/{worklog.id}",
        "author": author,
        "updateAuthor": author,
        "comment": renderer.rich_text(adf([worklog.comment])),
        "created": jira_time(worklog.created_ms, worklog.offset),
        "updated": jira_time(worklog.updated_ms, worklog.offset),
        "started": jira_time(worklog.started_ms, worklog.offset),
        "timeSpent": spent(worklog.seconds),
        "timeSpentSeconds": worklog.seconds,
        "id": str(worklog.id),
        "issueId": str(issue_id),
    }
