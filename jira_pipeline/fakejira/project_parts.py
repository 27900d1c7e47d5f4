"""The fake's project versions and components, listed exactly as issues carry them in
`fixVersions` and `components` (`/project/{key}/version[s]`, `/project/{key}/component[s]`,
the site-wide `/component`), and admin routes that remove a row from its listing, restore it,
or make a project's lists answer 404 as after a deletion racing the project listing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.reference import page_bean

if TYPE_CHECKING:
    from jira_pipeline.fakejira.app import Call
    from jira_pipeline.fakejira.render import SiteRenderer
    from jira_pipeline.fakejira.site import FakeJiraSite

_JSON = "application/json;charset=UTF-8"
PAGE_DEFAULT, PAGE_MAX = 50, 100  # maxResults of the paged lists (the document's default)
KINDS = ("version", "component")
# Projects whose version and component requests answer 404 though /project still lists them.
GONE = "project_lists_gone"
FAIL = "project_lists_fail_"  # + the status they answer instead (never retried away)
ARCHIVED = "project_archived"  # listed only when archived projects are asked for


def listed_projects(site: FakeJiraSite, statuses: set[str]) -> list[int]:
    """The visible projects in `statuses` ("live", "archived"): what /project/search lists
    (`status`, default live) and Data Center's /project (`includeArchived`)."""
    archived = {pid for kind, pid in site.data.removed_reference if kind == ARCHIVED}
    return [i for i in site.visible_project_indexes()
            if ("archived" if site.data.projects[i].id in archived else "live") in statuses]
VERSION_ORDERS = ("description", "name", "releaseDate", "sequence", "startDate")
VERSION_STATUSES = ("released", "unreleased", "archived")


def _project_index(call: Call) -> int:
    """The project named by the path (key or id) that the caller may see, or Jira's 404."""
    from jira_pipeline.fakejira.app import ApiError

    ref = call.request.path_params["key"]
    site = call.site
    gone = site.data.removed_reference
    for index, project in enumerate(site.data.projects):
        if ref.upper() == project.key or ref == project.id:
            failing = [kind for kind, pid in gone if pid == project.id and kind.startswith(FAIL)]
            if failing:
                raise ApiError(int(failing[0][len(FAIL):]), "Internal server error")
            if project.key not in site.knobs.forbidden_projects and (GONE, project.id) not in gone:
                return index
            break
    raise ApiError(404, f"No project could be found with key '{ref}'.")


def _listed(call: Call, kind: str, rows: list[dict]) -> list[dict]:
    removed = call.site.data.removed_reference
    return [row for row in rows if (kind, row["id"]) not in removed]


def _day(value: date) -> str:
    return value.isoformat()


def versions(renderer: SiteRenderer, project: int, today: date, start: date) -> list[dict]:
    """Version: what issues embed plus dates (from the clock start: two released versions, one
    upcoming, overdue on every other project), the project id and `overdue` as of `today`."""
    out = []
    pid = int(renderer.data.projects[project].id)
    for index, embedded in enumerate(renderer.versions[project]):
        begins = start + timedelta(days=40 * index - 120)
        ends = begins + timedelta(days=40 if index < 2 or project % 2 == 0 else 35)
        body = {**embedded, "startDate": _day(begins), "releaseDate": _day(ends),
                "userStartDate": begins.strftime("%d/%b/%y"),
                "userReleaseDate": ends.strftime("%d/%b/%y"), "projectId": pid}
        if not embedded["released"]:
            body["overdue"] = ends < today
        out.append(body)
    return out


def components(renderer: SiteRenderer, project: int, *, unpaged: bool) -> list[dict]:
    """ComponentWithIssueCount (paged list) or ProjectComponent (unpaged): what issues embed
    plus the description, the lead (the project lead on every other component), the assignee
    type and the project; the paged list counts the project's live issues in each."""
    data = renderer.data
    owner = data.projects[project]
    counts = [0] * len(owner.components)
    if not unpaged:
        for issue in data.issues:
            if issue.project == project and not issue.deleted:
                for c in issue.components:
                    counts[c] += 1
    out = []
    for index, embedded in enumerate(renderer.components[project]):
        led = index % 2 == 0
        lead = renderer.users[owner.lead]
        assignee_type = "COMPONENT_LEAD" if led else "PROJECT_DEFAULT"
        body: dict = {**embedded, "description": f"Work on {embedded['name'].lower()}.",
                      "assigneeType": assignee_type, "assignee": lead,
                      "realAssigneeType": assignee_type if led else "PROJECT_LEAD",
                      "realAssignee": lead, "isAssigneeTypeValid": True,
                      "project": owner.key, "projectId": int(owner.id)}
        if led:
            body["lead"] = lead
            if unpaged and renderer.cloud:
                body["leadAccountId"] = data.users[owner.lead].account_id
            elif unpaged:
                body["leadUserName"] = data.users[owner.lead].name
        if not unpaged:
            body["issueCount"] = counts[index]
        out.append(body)
    return out


def project_part_counts(renderer: SiteRenderer) -> dict[str, int]:
    """How many versions and components the collections should hold (the demo's counts)."""
    return {
        "jira_project_versions": sum(len(rows) for rows in renderer.versions),
        "jira_project_components": sum(len(rows) for rows in renderer.components),
    }


def _versions(call: Call) -> list[dict]:
    index = _project_index(call)
    site = call.site
    return _listed(call, "version", versions(call.renderer, index, site.clock.now().date(),
                                             site.start.date()))


async def version_list(call: Call) -> object:
    return _versions(call)


async def version_page(call: Call) -> object:
    """PageBeanVersion after `status` (released, unreleased, archived; any of a comma list),
    `query` (in name or description) and `orderBy`; `expand` is ignored."""
    from jira_pipeline.fakejira.app import ApiError

    rows = _versions(call)
    params = call.request.query_params
    wanted = {s.strip() for s in (params.get("status") or "").split(",") if s.strip()}
    if wanted:
        rows = [row for row in rows if ("archived" in wanted and row["archived"])
                or ("released" in wanted and row["released"] and not row["archived"])
                or ("unreleased" in wanted and not row["released"] and not row["archived"])]
    query = (params.get("query") or "").lower()
    if query:
        rows = [row for row in rows
                if query in row["name"].lower() or query in row["description"].lower()]
    order = params.get("orderBy") or "sequence"
    name = order.lstrip("+-")
    if name not in VERSION_ORDERS:
        raise ApiError(400, f"Invalid orderBy parameter: {order}")
    if name != "sequence":
        rows = sorted(rows, key=lambda row: row.get(name) or "")
    if order.startswith("-"):
        rows = rows[::-1]
    key = call.request.path_params["key"]
    return page_bean(call, f"{call.renderer.rest}/project/{key}/version", rows,
                     PAGE_DEFAULT, PAGE_MAX)


async def component_list(call: Call) -> object:
    return _listed(call, "component", components(call.renderer, _project_index(call),
                                                 unpaged=True))


async def component_page(call: Call) -> object:
    """PageBeanComponentWithIssueCount after `query` (in name or description) and `orderBy`
    (name, description, issueCount); `componentSource` is ignored (no Compass here)."""
    from jira_pipeline.fakejira.app import ApiError

    rows = _listed(call, "component", components(call.renderer, _project_index(call),
                                                 unpaged=False))
    params = call.request.query_params
    query = (params.get("query") or "").lower()
    if query:
        rows = [row for row in rows
                if query in row["name"].lower() or query in row["description"].lower()]
    order = params.get("orderBy")
    if order:
        name = order.lstrip("+-")
        if name not in ("name", "description", "issueCount", "lead"):
            raise ApiError(400, f"Invalid orderBy parameter: {order}")
        rows = sorted(rows, key=lambda row: (row.get(name) if name != "lead"
                                             else (row.get("lead") or {}).get("displayName"))
                      or "", reverse=order.startswith("-"))
    key = call.request.path_params["key"]
    return page_bean(call, f"{call.renderer.rest}/project/{key}/component", rows,
                     PAGE_DEFAULT, PAGE_MAX)


async def component_search(call: Call) -> object:
    """The site-wide PageBean2ComponentJsonBean of the projects in `projectIdsOrKeys` (every
    visible project without it): ComponentJsonBean carries no project, lead or assignee type."""
    params = call.request.query_params
    refs = {ref.strip().upper() for value in params.getlist("projectIdsOrKeys")
            for ref in value.split(",") if ref.strip()}
    site = call.site
    rows: list[dict] = []
    for index in site.visible_project_indexes():
        project = site.data.projects[index]
        if (GONE, project.id) in site.data.removed_reference:
            continue
        if refs and project.key not in refs and project.id not in refs:
            continue
        for row in _listed(call, "component", components(call.renderer, index, unpaged=True)):
            rows.append({k: row[k] for k in ("self", "id", "name", "description")})
    query = (params.get("query") or "").lower()
    if query:
        rows = [row for row in rows if query in row["name"].lower()]
    order = params.get("orderBy")
    if order and order.lstrip("+-") in ("name", "description"):
        rows = sorted(rows, key=lambda row: row[order.lstrip("+-")],
                      reverse=order.startswith("-"))
    return page_bean(call, f"{call.renderer.rest}/component", rows, PAGE_DEFAULT, PAGE_MAX)


Handler = Callable[["Call"], Awaitable[object]]
CLOUD_PROJECT_PART_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/project/{key}/version", version_page, ("GET",)),
    ("/project/{key}/versions", version_list, ("GET",)),
    ("/project/{key}/component", component_page, ("GET",)),
    ("/project/{key}/components", component_list, ("GET",)),
    ("/component", component_search, ("GET",)),
)
DATACENTER_PROJECT_PART_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/project/{key}/version", version_page, ("GET",)),
    ("/project/{key}/versions", version_list, ("GET",)),
    ("/project/{key}/components", component_list, ("GET",)),
)


def project_part_admin_routes(site: FakeJiraSite) -> list[Route]:
    """`DELETE /_fake/project-parts/{version|component}/{id}` removes a version or component
    from its listings (issues keep carrying it); `POST .../restore` brings it back.
    `DELETE /_fake/project-parts/project/{key}` makes the project's version and component
    requests answer 404 while /project still lists it (`?status=N`: answer N instead, an error
    no retry gets past); `POST .../restore` undoes it. `DELETE /_fake/project-parts/archive/{key}`
    archives the project (listed only when archived projects are asked for); `POST
    .../restore` unarchives it."""

    def known(kind: str, row_id: str) -> str | None:
        for project in site.data.projects:
            if kind in ("project", "archive") and row_id.upper() in (project.key, project.id):
                return project.id
            rows = project.versions if kind == "version" else project.components
            if kind in KINDS and any(row[0] == row_id for row in rows):
                return row_id
        return None

    async def change(request: Request) -> Response:
        kind, row_id = request.path_params["kind"], request.path_params["id"]
        found = known(kind, row_id)
        if found is None:
            body = {"errorMessages": [f"No {kind} {row_id}"], "errors": {}}
            return Response(orjson.dumps(body), status_code=404, media_type=_JSON)
        status = request.query_params.get("status", "404")
        if kind == "project" and status != "404":
            if not status.isdigit():
                body = {"errorMessages": [f"status must be a number, not {status}"], "errors": {}}
                return Response(orjson.dumps(body), status_code=400, media_type=_JSON)
        entry = (ARCHIVED if kind == "archive" else kind if kind != "project"
                 else GONE if status == "404" else FAIL + status, found)
        if request.method == "DELETE":
            site.data.removed_reference.add(entry)
        else:
            site.data.removed_reference.difference_update(
                {row for row in site.data.removed_reference
                 if row[1] == found and (row[0] == entry[0] or (kind == "project"
                                         and row[0].startswith((GONE, FAIL))))})
        site.data.version += 1
        removed = sorted(f"{k}/{i}" for k, i in site.data.removed_reference)
        return Response(orjson.dumps({"removed": removed}), media_type=_JSON)

    return [
        Route("/_fake/project-parts/{kind}/{id}", change, methods=["DELETE"]),
        Route("/_fake/project-parts/{kind}/{id}/restore", change, methods=["POST"]),
    ]
