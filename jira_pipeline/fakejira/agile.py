"""The fake's Jira Software side: boards, sprints, the sprint field on issues and its changelog,
served under `/rest/agile/1.0` in Cloud and Data Center alike.

What the site holds (built once per dataset from the seed, `AgileBook`):

- Boards, numbered from 1 in this order: a `scrum` board per project ("KEY board"); a `kanban`
  board for every other project (odd project indexes, "KEY Kanban"); a `simple` (team-managed)
  board that supports sprints, on the second project; a `simple` board that does not (its
  sprint list answers 400 "The board does not support sprints"), on the last project; and a
  cross-project `scrum` board whose filter spans the first two projects, so it lists the
  sprints of their scrum boards: those sprints are shared (same `id`, `originBoardId` the
  owning board) and listed by two boards.
- Sprints of every board that owns them (the scrum boards of each project and the sprint-capable
  simple board): a two-week cadence over the dataset's span, `closed` (with `completeDate`) up
  to the one running at the clock start (`active`, with `activatedDate` on Cloud), then one
  `future` sprint (no dates) on every other owning board. Sprint ids count from 1 in board
  order.
- Sprint history of a share of the issues of projects with a sprint board (not epics or
  sub-tasks): added to a sprint (before or after its start), sometimes removed mid-sprint,
  sometimes carried over when the sprint closes unfinished (Jira keeps the closed sprint in the
  field and adds the next: "1" -> "1, 2"), else completed inside it. Each change is a history
  with a `Sprint` item (`fieldId` customfield_10020, `from`/`to` the ids and
  `fromString`/`toString` the names, comma-space separated, absent when empty); sprint issues
  have story points, some re-estimated during their first sprint ("Story point estimate",
  customfield_10016, `fromString`/`toString` the numbers). All lie within the issue's seeded
  past, so `updated` is at least the last change; replaying the changelog ends at the field.

The sprint field (customfield_10020) is a list of `{id, name, state, boardId, goal, startDate,
endDate, completeDate}` objects on Cloud (v3 and v2; dates left out when the sprint has none)
and a list of `com.atlassian.greenhopper.service.sprint.Sprint@<hex>[id=..,rapidViewId=..,
state=CLOSED,name=..,startDate=..,endDate=..,completeDate=..,activatedDate=..,sequence=..,
goal=..]` strings on Data Center (`<null>` for what is missing); null when the issue is in no
sprint.

Ground truth for tests (import these; `data` is `site.data`):

- `sprints(data) -> list[Sprint]`: every sprint definition (`id`, `board_id` = origin board,
  `name`, `state`, `start_ms`, `end_ms`, `complete_ms`, `activated_ms`, `created_ms`, `goal`)
  and `boards(data) -> list[Board]` (`id`, `name`, `type`, `project`, `supports_sprints`,
  `shows`: the owning boards whose sprints it lists, itself included; `listed`: False once
  removed through the admin route).
- `sprint_membership(data) -> {sprint_id: {issue_id: [(added_ms, removed_ms | None), ...]}}`:
  every interval an issue spent in a sprint's field, `None` while it is still there (deleted
  issues left out).
- `current_sprint_ids(data, issue) -> list[int]`: what the issue's field holds now.
- `agile_counts(renderer) -> {"jira_boards": listed boards, "jira_sprints": distinct sprint ids
  the listed boards show}`: the demo's expected counts.

Admin routes: `POST /_fake/agile/sprints/{id}/issues` with `{"add": [keys]}` or
`{"remove": [keys]}` moves issues into (out of any other open sprint) or out of a sprint now,
updating the field, the changelog and `updated`; `DELETE /_fake/agile/boards/{id}` removes a
board from the listing (its sprint list answers 404, its sprints stay readable by id) and
`POST /_fake/agile/boards/{id}/restore` brings it back; `POST /_fake/agile/boards/{id}/fail`
with `{"status": 400, "message": ...}` makes that board's sprint list answer that error;
`POST /_fake/agile/config` with `{"omit_is_last": true}` leaves `isLast` out of board and
sprint pages.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.dataset import (
    DAY_MS,
    EPIC,
    MINUTE_MS,
    SUBTASK,
    Dataset,
    History,
    HistoryItem,
    Issue,
)

if TYPE_CHECKING:
    from jira_pipeline.fakejira.app import Call
    from jira_pipeline.fakejira.render import SiteRenderer
    from jira_pipeline.fakejira.site import FakeJiraSite

_JSON = "application/json;charset=UTF-8"
SPRINT_FIELD = "customfield_10020"
STORY_POINTS_FIELD = "customfield_10016"
SPRINT_DAYS = 14
BOARD_PAGE_CAP = 50
SPRINT_PAGE_CAP = 50
ISSUE_PAGE_DEFAULT, ISSUE_PAGE_CAP = 50, 100
NO_SPRINTS = "The board does not support sprints"
NO_BOARD = "Board does not exist or you do not have permission to see it."
SPRINT_STATES = ("future", "active", "closed")
SPRINT_SHARE = 0.6  # of the eligible issues, those given a sprint history
GOALS = ("", "Ship the checkout revamp", "Pay down flaky tests", "Harden the login flow",
         "Cut p95 latency", "")
POINTS = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0)
_HISTORY_BASE = 2_000_000_000  # sprint history ids: above generated and admin-made ids
HOUR_MS = 3_600_000


@dataclass
class Board:
    id: int
    name: str
    type: str  # scrum | kanban | simple
    project: int  # index of the location project
    supports_sprints: bool
    shows: tuple[int, ...] = ()  # owning boards whose sprints its /sprint lists
    listed: bool = True
    fail: tuple[int, str] | None = None  # (status, message) its sprint list answers


@dataclass
class Sprint:
    id: int
    board_id: int  # originBoardId
    name: str
    state: str
    start_ms: int | None
    end_ms: int | None
    complete_ms: int | None
    activated_ms: int | None
    created_ms: int
    goal: str

    @property
    def closes_ms(self) -> int | None:
        """When the sprint stopped taking issues (closed) or None while it is open."""
        return self.complete_ms


# One change of an issue's sprint field: (ms, field before, field after).
SprintEvent = tuple[int, tuple[int, ...], tuple[int, ...]]


@dataclass
class AgileBook:
    boards: list[Board]
    sprints: list[Sprint]
    # Per issue number: sprint field changes in order, and the generated histories they made.
    events: dict[int, list[SprintEvent]] = field(default_factory=dict)
    histories: dict[int, list[History]] = field(default_factory=dict)
    # Board and sprint pages leave `isLast` out (`POST /_fake/agile/config`), as some proxies
    # and old servers do: a client must page on until a short or empty page.
    omit_is_last: bool = False

    def sprint(self, sprint_id: int) -> Sprint | None:
        return self.sprints[sprint_id - 1] if 1 <= sprint_id <= len(self.sprints) else None

    def board(self, board_id: int) -> Board | None:
        return self.boards[board_id - 1] if 1 <= board_id <= len(self.boards) else None

    def current(self, num: int) -> tuple[int, ...]:
        events = self.events.get(num)
        return events[-1][2] if events else ()


def build_agile(data: Dataset, seed: int, now_ms: int, days: int) -> AgileBook:
    """Boards, sprints and sprint histories, from their own random stream (the dataset's other
    figures stay as they were) ; sprint issues without story points get some."""
    rng = random.Random(seed * 104_729 + 17)
    projects = data.projects
    count = len(projects)
    boards: list[Board] = []

    def add(name: str, kind: str, project: int, sprints: bool) -> Board:
        board = Board(len(boards) + 1, name, kind, project, sprints)
        boards.append(board)
        return board

    scrum = [add(f"{p.key} board", "scrum", i, True) for i, p in enumerate(projects)]
    for i, p in enumerate(projects):
        if i % 2 == 1:
            add(f"{p.key} Kanban", "kanban", i, False)
    simple_project = 1 % count
    simple = add(f"{projects[simple_project].name} team board", "simple", simple_project, True)
    add(f"{projects[-1].name} simple board", "simple", count - 1, False)
    cross = add("Cross-team board", "scrum", 0, True)
    owners = [*scrum, simple]
    for board in owners:
        board.shows = (board.id,)
    cross.shows = tuple(b.id for b in scrum[:2])

    first_day = (now_ms - days * DAY_MS) // DAY_MS * DAY_MS
    sprints: list[Sprint] = []
    by_board: dict[int, list[Sprint]] = {}
    for j, board in enumerate(owners):
        anchor = first_day + 9 * HOUR_MS + (j % 5) * DAY_MS
        label = projects[board.project].key if board.type == "scrum" else "Team"
        own: list[Sprint] = []
        k = 0
        while True:
            start = anchor + k * SPRINT_DAYS * DAY_MS
            end = start + SPRINT_DAYS * DAY_MS
            sid = len(sprints) + 1
            name = f"{label} Sprint {k + 1}"
            goal = GOALS[(j + k) % len(GOALS)]
            created = start - 3 * DAY_MS
            if start > now_ms:
                if j % 2 == 0:
                    sprint = Sprint(sid, board.id, name, "future", None, None, None, None,
                                    min(created, now_ms - DAY_MS), goal)
                    sprints.append(sprint)
                    own.append(sprint)
                break
            if end <= now_ms:
                # Closed on its last day, before the next sprint starts: what it carries over
                # is in the next one when that one is activated (committed to it).
                complete = min(end - HOUR_MS + j * MINUTE_MS, now_ms - MINUTE_MS)
                sprint = Sprint(sid, board.id, name, "closed", start, end, complete,
                                start + 2 * MINUTE_MS, created, goal)
            else:
                sprint = Sprint(sid, board.id, name, "active", start, end, None,
                                start + 2 * MINUTE_MS, created, goal)
            sprints.append(sprint)
            own.append(sprint)
            k += 1
        by_board[board.id] = own

    book = AgileBook(boards, sprints)
    for issue in data.issues:
        if issue.type in (EPIC, SUBTASK) or rng.random() >= SPRINT_SHARE:
            continue
        home = scrum[issue.project]
        if issue.project == simple_project and rng.random() < 0.5:
            home = simple
        _sprint_history(book, issue, by_board[home.id], rng)
    return book


# Of the issues taken into a running sprint's time, the share planned into the next sprint
# instead (added before it starts, so committed at its start).
PLANNED_SHARE = 0.6

def _sprint_history(book: AgileBook, issue: Issue, own: list[Sprint],
                    rng: random.Random) -> None:
    lo, hi = issue.created + MINUTE_MS, issue.seeded
    if hi - lo < HOUR_MS:
        return
    added = lo + int(rng.random() * min(hi - lo, 10 * DAY_MS))
    index = next((n for n, s in enumerate(own)
                  if s.complete_ms is None or s.complete_ms > added), None)
    if index is None:
        return
    sprint = own[index]
    if (sprint.start_ms is not None and sprint.start_ms < added and index + 1 < len(own)
            and rng.random() < PLANNED_SHARE):
        # Most work is planned: put into the next sprint before that one starts.
        index += 1
    names = {s.id: s.name for s in book.sprints}
    events: list[SprintEvent] = [(added, (), (own[index].id,))]
    points = issue.custom[0]
    if points is None:
        points = rng.choice(POINTS)
        issue.custom = (points, *issue.custom[1:])
    histories: list[History] = []
    author = rng.randrange(2)  # the demo user or the first app: who plans sprints
    while True:
        sprint, last = own[index], events[-1][0]
        roll = rng.random()
        closes = sprint.complete_ms
        if roll < 0.15:  # removed mid-sprint
            lo_rm = max(last + MINUTE_MS, sprint.start_ms or last + MINUTE_MS)
            hi_rm = min(hi, closes or sprint.end_ms or hi)
            if lo_rm < hi_rm:
                at = lo_rm + int(rng.random() * (hi_rm - lo_rm))
                before = events[-1][2]
                events.append((at, before, tuple(s for s in before if s != sprint.id)))
            break
        if roll < 0.55 and closes is not None and last < closes <= hi \
                and index + 1 < len(own):  # carried over when the sprint closed unfinished
            index += 1
            before = events[-1][2]
            events.append((closes, before, (*before, own[index].id)))
            continue
        break  # completed inside it (or still in it)
    for n, (at, before, after) in enumerate(events):
        item = _sprint_item(names, before, after)
        histories.append(History(str(_HISTORY_BASE + issue.id * 100 + n), author, at,
                                 issue.offset, (item,)))
    first = own[next(n for n, s in enumerate(own) if s.id == events[0][2][0])]
    if rng.random() < 0.3:  # re-estimated during its first sprint
        start = max(events[0][0], first.start_ms or events[0][0]) + MINUTE_MS
        stop = min(hi, first.end_ms or hi, events[1][0] if len(events) > 1 else hi)
        if start < stop:
            at = start + int(rng.random() * (stop - start))
            before_points = rng.choice([p for p in POINTS if p != points])
            item = ("Story point estimate", "custom", STORY_POINTS_FIELD, None,
                    _points_text(before_points), None, _points_text(points))
            histories.append(History(str(_HISTORY_BASE + issue.id * 100 + 99), author, at,
                                     issue.offset, (item,)))
            histories.sort(key=lambda h: h.created_ms)
    book.events[issue.num] = events
    book.histories[issue.num] = histories


def _points_text(points: float) -> str:
    return str(points)


def _sprint_item(names: dict[int, str], before: tuple[int, ...],
                 after: tuple[int, ...]) -> HistoryItem:
    def ids(value: tuple[int, ...]) -> str | None:
        return ", ".join(str(s) for s in value) or None

    def text(value: tuple[int, ...]) -> str | None:
        return ", ".join(names[s] for s in value) or None

    return ("Sprint", "custom", SPRINT_FIELD, ids(before), text(before), ids(after), text(after))


# --- ground truth ---------------------------------------------------------------------------


def agile_book(data: Dataset) -> AgileBook:
    book = data.agile
    assert isinstance(book, AgileBook), "the dataset was built without its agile book"
    return book


def boards(data: Dataset) -> list[Board]:
    return list(agile_book(data).boards)


def sprints(data: Dataset) -> list[Sprint]:
    return list(agile_book(data).sprints)


def current_sprint_ids(data: Dataset, issue: Issue) -> list[int]:
    return list(agile_book(data).current(issue.num))


def sprint_membership(data: Dataset) -> dict[int, dict[str, list[tuple[int, int | None]]]]:
    """Every interval each issue spent in each sprint's field (removed None: still there)."""
    out: dict[int, dict[str, list[tuple[int, int | None]]]] = {}
    book = agile_book(data)
    for num, events in book.events.items():
        issue = data.issues[num]
        if issue.deleted:
            continue
        open_since: dict[int, int] = {}
        intervals: dict[int, list[tuple[int, int | None]]] = {}
        for at, before, after in events:
            for sid in after:
                if sid not in before:
                    open_since[sid] = at
            for sid in before:
                if sid not in after:
                    intervals.setdefault(sid, []).append((open_since.pop(sid), at))
        for sid, since in open_since.items():
            intervals.setdefault(sid, []).append((since, None))
        for sid, spans in intervals.items():
            out.setdefault(sid, {})[str(issue.id)] = sorted(spans)
    return out


def _shown_sprints(book: AgileBook, board: Board) -> list[Sprint]:
    shown = [s for s in book.sprints if s.board_id in board.shows]
    return sorted(shown, key=lambda s: (SPRINT_STATES.index(s.state) != 2,
                                        s.start_ms or 1 << 62, s.id))


def agile_counts(renderer: SiteRenderer) -> dict[str, int]:
    """The demo's expected counts: listed boards, and the distinct sprints they list."""
    book = agile_book(renderer.data)
    listed = [b for b in book.boards if b.listed]
    sprint_ids = {s.id for b in listed if b.supports_sprints for s in _shown_sprints(book, b)}
    return {"jira_boards": len(listed), "jira_sprints": len(sprint_ids)}


# --- rendering ------------------------------------------------------------------------------


def iso(ms: int) -> str:
    """`2026-01-05T09:00:00.000Z`, how the agile API writes its dates."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _agile_base(renderer: SiteRenderer) -> str:
    return f"{renderer.base}/rest/agile/1.0"


def board_json(renderer: SiteRenderer, board: Board) -> dict:
    project = renderer.data.projects[board.project]
    display = f"{project.name} ({project.key})"
    return {
        "id": board.id,
        "self": f"{_agile_base(renderer)}/board/{board.id}",
        "name": board.name,
        "type": board.type,
        "location": {
            "projectId": int(project.id),
            "displayName": display,
            "projectName": project.name,
            "projectKey": project.key,
            "projectTypeKey": project.type_key,
            "avatarURI": f"{renderer.base}/secure/projectavatar?size=small&avatarId={project.id}",
            "name": display,
        },
    }


def sprint_json(renderer: SiteRenderer, sprint: Sprint) -> dict:
    body: dict[str, Any] = {
        "id": sprint.id,
        "self": f"{_agile_base(renderer)}/sprint/{sprint.id}",
        "state": sprint.state,
        "name": sprint.name,
    }
    if sprint.start_ms is not None and sprint.end_ms is not None:
        body["startDate"] = iso(sprint.start_ms)
        body["endDate"] = iso(sprint.end_ms)
    if sprint.complete_ms is not None:
        body["completeDate"] = iso(sprint.complete_ms)
    if renderer.cloud and sprint.activated_ms is not None:
        body["activatedDate"] = iso(sprint.activated_ms)
    body["createdDate"] = iso(sprint.created_ms)
    body["originBoardId"] = sprint.board_id
    body["goal"] = sprint.goal
    return body


def _dc_sprint_string(sprint: Sprint) -> str:
    def when(ms: int | None) -> str:
        return "<null>" if ms is None else iso(ms)

    identity = (sprint.id * 2654435761) & 0xFFFFFFF  # what Java's default toString shows
    return (f"com.atlassian.greenhopper.service.sprint.Sprint@{identity:x}"
            f"[id={sprint.id},rapidViewId={sprint.board_id},state={sprint.state.upper()},"
            f"name={sprint.name},startDate={when(sprint.start_ms)},endDate={when(sprint.end_ms)},"
            f"completeDate={when(sprint.complete_ms)},activatedDate={when(sprint.activated_ms)},"
            f"sequence={sprint.id},goal={sprint.goal or '<null>'}]")


def sprint_field(renderer: SiteRenderer, issue: Issue) -> list | None:
    """The issue's customfield_10020 as this surface serves it (None: in no sprint)."""
    book = renderer.data.agile
    if not isinstance(book, AgileBook):
        return None
    ids = book.current(issue.num)
    if not ids:
        return None
    found = [s for s in (book.sprint(i) for i in ids) if s is not None]
    if not renderer.cloud:
        return [_dc_sprint_string(s) for s in found]
    out = []
    for sprint in found:
        value: dict[str, Any] = {"id": sprint.id, "name": sprint.name, "state": sprint.state,
                                 "boardId": sprint.board_id, "goal": sprint.goal}
        if sprint.start_ms is not None and sprint.end_ms is not None:
            value["startDate"] = iso(sprint.start_ms)
            value["endDate"] = iso(sprint.end_ms)
        if sprint.complete_ms is not None:
            value["completeDate"] = iso(sprint.complete_ms)
        out.append(value)
    return out


def with_sprint_histories(data: Dataset, issue: Issue, generated: list[History]) -> list[History]:
    """The issue's generated histories with its sprint and estimate changes merged in by time."""
    book = data.agile
    extra = book.histories.get(issue.num) if isinstance(book, AgileBook) else None
    if not extra:
        return generated
    return sorted([*generated, *extra], key=lambda h: h.created_ms)


# --- endpoints ------------------------------------------------------------------------------


def _error(status: int, message: str) -> Exception:
    from jira_pipeline.fakejira.app import ApiError

    return ApiError(status, message)


def _paging(call: Call, default: int, cap: int) -> tuple[int, int]:
    from jira_pipeline.fakejira.app import _int_param

    start = max(0, _int_param(call.request, "startAt", 0))
    size = min(max(1, _int_param(call.request, "maxResults", default)), cap)
    return start, size


def _visible(call: Call, board: Board) -> bool:
    project = call.site.data.projects[board.project]
    return board.listed and project.key not in call.site.knobs.forbidden_projects


async def board_list(call: Call) -> object:
    book = agile_book(call.site.data)
    params = call.request.query_params
    rows = [b for b in book.boards if _visible(call, b)]
    kinds = {t.strip() for v in params.getlist("type") for t in v.split(",") if t.strip()}
    if kinds - {"scrum", "kanban", "simple"}:
        raise _error(400, f"Invalid board type: {', '.join(sorted(kinds))}")
    if kinds:
        rows = [b for b in rows if b.type in kinds]
    wanted = (params.get("projectKeyOrId") or "").upper()
    if wanted:
        projects = call.site.data.projects
        rows = [b for b in rows if wanted in (projects[b.project].key, projects[b.project].id)]
    name = (params.get("name") or "").lower()
    if name:
        rows = [b for b in rows if name in b.name.lower()]
    start, size = _paging(call, BOARD_PAGE_CAP, BOARD_PAGE_CAP)
    page = rows[start:start + size]
    body = {"maxResults": size, "startAt": start, "total": len(rows),
            "isLast": start + size >= len(rows),
            "values": [board_json(call.renderer, b) for b in page]}
    if book.omit_is_last:
        del body["isLast"]
    return body


def _board(call: Call) -> Board:
    raw = call.request.path_params["boardId"]
    book = agile_book(call.site.data)
    board = book.board(int(raw)) if raw.isdigit() else None
    if board is None or not _visible(call, board):
        raise _error(404, NO_BOARD)
    return board


async def board_get(call: Call) -> object:
    return board_json(call.renderer, _board(call))


async def board_sprints(call: Call) -> object:
    board = _board(call)
    if board.fail is not None:
        raise _error(*board.fail)
    if not board.supports_sprints:
        raise _error(400, NO_SPRINTS)
    states = {s.strip() for v in call.request.query_params.getlist("state")
              for s in v.split(",") if s.strip()}
    unknown = states - set(SPRINT_STATES)
    if unknown:
        raise _error(400, f"The sprint state '{sorted(unknown)[0]}' is not valid.")
    shown = _shown_sprints(agile_book(call.site.data), board)
    if states:
        shown = [s for s in shown if s.state in states]
    start, size = _paging(call, SPRINT_PAGE_CAP, SPRINT_PAGE_CAP)
    page = shown[start:start + size]
    body = {"maxResults": size, "startAt": start, "isLast": start + size >= len(shown),
            "values": [sprint_json(call.renderer, s) for s in page]}
    if agile_book(call.site.data).omit_is_last:
        del body["isLast"]
    return body


def _sprint(call: Call) -> Sprint:
    raw = call.request.path_params["sprintId"]
    sprint = agile_book(call.site.data).sprint(int(raw)) if raw.isdigit() else None
    if sprint is None:
        raise _error(404, f"Sprint with id {raw} does not exist or you do not have permission "
                          "to see it.")
    return sprint


async def sprint_get(call: Call) -> object:
    return sprint_json(call.renderer, _sprint(call))


def sprint_issues_now(site: FakeJiraSite, sprint_id: int) -> list[Issue]:
    """The visible live issues whose sprint field holds the sprint now, in id order."""
    data = site.data
    book = agile_book(data)
    hidden = set(site.knobs.forbidden_projects)
    return [data.issues[num] for num in sorted(book.events)
            if sprint_id in book.current(num) and not data.issues[num].deleted
            and data.projects[data.issues[num].project].key not in hidden]


async def sprint_issue_list(call: Call) -> object:
    from jira_pipeline.fakejira.app import _render_issues, select_fields

    sprint = _sprint(call)
    params = call.request.query_params
    issues = sprint_issues_now(call.site, sprint.id)
    start, size = _paging(call, ISSUE_PAGE_DEFAULT, ISSUE_PAGE_CAP)
    wanted = select_fields(params.getlist("fields"), default="*navigable")
    expand = {e.strip() for v in params.getlist("expand") for e in v.split(",") if e.strip()}
    page = issues[start:start + size]
    return {"expand": "schema,names", "startAt": start, "maxResults": size,
            "total": len(issues), "issues": _render_issues(call, page, wanted or (), expand)}


Handler = Callable[["Call"], Awaitable[object]]
# Cloud and Data Center serve the agile API alike.
AGILE_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/board", board_list, ("GET",)),
    ("/board/{boardId}", board_get, ("GET",)),
    ("/board/{boardId}/sprint", board_sprints, ("GET",)),
    ("/sprint/{sprintId}", sprint_get, ("GET",)),
    ("/sprint/{sprintId}/issue", sprint_issue_list, ("GET",)),
)


# --- admin ----------------------------------------------------------------------------------


def move_issues(site: FakeJiraSite, sprint_id: int, add: list[str],
                remove: list[str]) -> list[dict]:
    """Move issues into the sprint (out of any other open sprint) or out of it, now."""
    from jira_pipeline.fakejira.site import AdminError

    data = site.data
    book = agile_book(data)
    sprint = book.sprint(sprint_id)
    if sprint is None:
        raise AdminError(404, f"No sprint {sprint_id}")
    if add and sprint.state == "closed":
        raise AdminError(400, "Issues can not be added to a closed sprint.")
    names = {s.id: s.name for s in book.sprints}
    moved = []
    for key, adding in [*((k, True) for k in add), *((k, False) for k in remove)]:
        issue = site.issue_by_key(key)
        before = book.current(issue.num)
        if adding:
            after = (*(s for s in before if s != sprint_id
                       and (found := book.sprint(s)) is not None and found.state == "closed"),
                     sprint_id)
        else:
            if sprint_id not in before:
                raise AdminError(400, f"{issue.key} is not in sprint {sprint_id}")
            after = tuple(s for s in before if s != sprint_id)
        if after == before:
            continue
        site._before_change(issue)
        now = max(site.clock.now_ms(), issue.updated + 1)
        book.events.setdefault(issue.num, []).append((now, before, after))
        history = History(str(data.next_history_id), site.myself_index(), now, issue.offset,
                          (_sprint_item(names, before, after),))
        data.next_history_id += 1
        issue.extra_histories = [*(issue.extra_histories or []), history]
        issue.updated = now
        site._changed(issue)
        moved.append({"key": issue.key, "sprints": list(after)})
    return moved


def agile_admin_routes(site: FakeJiraSite) -> list[Route]:
    from jira_pipeline.fakejira.site import AdminError

    def respond(body: object, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type=_JSON)

    async def guarded(request: Request, work: Callable[[dict], object]) -> Response:
        try:
            raw = await request.body()
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise AdminError(400, "Body must be a JSON object.")
            return respond(work(body))
        except AdminError as error:
            return respond({"errorMessages": [str(error)], "errors": {}}, error.status)
        except (ValueError, TypeError, KeyError) as error:
            return respond({"errorMessages": [f"Bad admin request: {error}"], "errors": {}}, 400)

    def board_of(request: Request) -> Board:
        raw = request.path_params["id"]
        board = agile_book(site.data).board(int(raw)) if raw.isdigit() else None
        if board is None:
            raise AdminError(404, f"No board {raw}")
        return board

    async def move(request: Request) -> Response:
        def work(body: dict) -> object:
            add, remove = body.get("add") or [], body.get("remove") or []
            if not isinstance(add, list) or not isinstance(remove, list) or not (add or remove):
                raise AdminError(400, "Give add and/or remove: lists of issue keys")
            raw = request.path_params["id"]
            if not raw.isdigit():
                raise AdminError(404, f"No sprint {raw}")
            return {"moved": move_issues(site, int(raw), [str(k) for k in add],
                                         [str(k) for k in remove])}
        return await guarded(request, work)

    async def listing(request: Request) -> Response:
        def work(body: dict) -> object:
            board = board_of(request)
            board.listed = request.method != "DELETE"
            site.data.version += 1
            return {"id": board.id, "listed": board.listed}
        return await guarded(request, work)

    async def fail(request: Request) -> Response:
        def work(body: dict) -> object:
            board = board_of(request)
            status = body.get("status")
            board.fail = None if status is None else (int(status), str(body.get("message")
                                                                         or "Bad request"))
            return {"id": board.id, "fail": board.fail}
        return await guarded(request, work)

    async def config(request: Request) -> Response:
        def work(body: dict) -> object:
            book = agile_book(site.data)
            if set(body) - {"omit_is_last"}:
                raise AdminError(400, "The agile knob is omit_is_last")
            book.omit_is_last = bool(body.get("omit_is_last", book.omit_is_last))
            return {"omit_is_last": book.omit_is_last}
        return await guarded(request, work)

    return [
        Route("/_fake/agile/config", config, methods=["POST"]),
        Route("/_fake/agile/sprints/{id}/issues", move, methods=["POST"]),
        Route("/_fake/agile/boards/{id}", listing, methods=["DELETE"]),
        Route("/_fake/agile/boards/{id}/restore", listing, methods=["POST"]),
        Route("/_fake/agile/boards/{id}/fail", fail, methods=["POST"]),
    ]
