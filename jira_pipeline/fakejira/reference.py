"""The fake's reference data: issue types, priorities, resolutions and status categories, listed
as the issues carry them (`/issuetype`, `/priority[/search]`, `/resolution[/search]`,
`/statuscategory`), and an admin route that removes a row from its listing and restores it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.dataset import (
    ISSUE_TYPES,
    PRIORITIES,
    RESOLUTIONS,
    STATUS_CATEGORIES,
)

if TYPE_CHECKING:
    from jira_pipeline.fakejira.app import Call
    from jira_pipeline.fakejira.render import SiteRenderer
    from jira_pipeline.fakejira.site import FakeJiraSite

_JSON = "application/json;charset=UTF-8"
DEFAULT_PRIORITY = "3"  # Medium, what a new issue gets
DEFAULT_RESOLUTION = "10000"  # Done
SEARCH_DEFAULT, SEARCH_MAX = 50, 100  # maxResults of /priority/search and /resolution/search
# Jira lists a fourth category that no status uses.
NO_CATEGORY = (1, "undefined", "No Category", "medium-gray")
KINDS = ("issuetype", "priority", "resolution", "statuscategory")


def _listed(call: Call, kind: str, rows: list[dict]) -> list[dict]:
    removed = call.site.data.removed_reference
    return [row for row in rows if (kind, str(row["id"])) not in removed]


def issue_types(renderer: SiteRenderer) -> list[dict]:
    """IssueTypeDetails, exactly as issues embed them."""
    return list(renderer.issue_types)


def priorities(renderer: SiteRenderer) -> list[dict]:
    """Priority: an issue's embedded priority plus its color, description and default flag."""
    by_id = {p["id"]: p for p in renderer.priorities}
    return [
        {**by_id[pid], "statusColor": color, "description": f"{name} priority.",
         "isDefault": pid == DEFAULT_PRIORITY}
        for pid, name, color in PRIORITIES
    ]


def resolutions(renderer: SiteRenderer) -> list[dict]:
    """Resolution (the first is what resolved issues carry)."""
    return [{"self": f"{renderer.rest}/resolution/{rid}", "id": rid, "description": text,
             "name": name} for rid, name, text in RESOLUTIONS]


def status_categories(renderer: SiteRenderer) -> list[dict]:
    """StatusCategory: those the statuses use (as issues embed them) and Jira's "No Category"."""
    cid, key, name, color = NO_CATEGORY
    unused = {"self": f"{renderer.rest}/statuscategory/{cid}", "id": cid, "key": key,
              "colorName": color, "name": name}
    return [unused, *(renderer.status_category(category) for category in STATUS_CATEGORIES)]


def reference_counts(renderer: SiteRenderer) -> dict[str, int]:
    """How many rows each reference collection should hold (the demo's expected counts)."""
    return {
        "jira_issue_types": len(issue_types(renderer)),
        "jira_priorities": len(priorities(renderer)),
        "jira_resolutions": len(resolutions(renderer)),
        "jira_status_categories": len(status_categories(renderer)),
    }


async def issue_type_list(call: Call) -> object:
    return _listed(call, "issuetype", issue_types(call.renderer))


async def priority_list(call: Call) -> object:
    return _listed(call, "priority", priorities(call.renderer))


async def resolution_list(call: Call) -> object:
    return _listed(call, "resolution", resolutions(call.renderer))


async def status_category_list(call: Call) -> object:
    return _listed(call, "statuscategory", status_categories(call.renderer))


async def priority_search(call: Call) -> object:
    rows = _listed(call, "priority", priorities(call.renderer))
    name = (call.request.query_params.get("priorityName") or "").lower()
    if name:
        rows = [row for row in rows if name in row["name"].lower()]
    return _search_page(call, "priority", rows)


async def resolution_search(call: Call) -> object:
    rows = [
        {**row, "default": row["id"] == DEFAULT_RESOLUTION}
        for row in _listed(call, "resolution", resolutions(call.renderer))
    ]
    return _search_page(call, "resolution", rows)


def _search_page(call: Call, kind: str, rows: list[dict]) -> dict:
    """A PageBean of `rows` after the `id` and `onlyDefault` filters both searches take."""
    from jira_pipeline.fakejira.app import _bool_param

    request = call.request
    ids = set(request.query_params.getlist("id"))
    if ids:
        rows = [row for row in rows if row["id"] in ids]
    if _bool_param(request, "onlyDefault", False):
        default = "isDefault" if kind == "priority" else "default"
        rows = [row for row in rows if row.get(default)]
    return page_bean(call, f"{call.renderer.rest}/{kind}/search", rows, SEARCH_DEFAULT,
                     SEARCH_MAX)


def page_bean(call: Call, base: str, rows: list[dict], default: int, cap: int) -> dict:
    """The startAt/maxResults page of `rows` as a PageBean, `self` and `nextPage` keeping the
    request's other parameters."""
    from jira_pipeline.fakejira.app import _int_param

    request = call.request
    start = max(0, _int_param(request, "startAt", 0))
    size = min(max(1, _int_param(request, "maxResults", default)), cap)
    page = rows[start:start + size]
    is_last = start + size >= len(rows)
    params = [(k, v) for k, v in request.query_params.multi_items()
              if k not in ("startAt", "maxResults")]
    body: dict = {
        "self": f"{base}?{urlencode([*params, ('startAt', start), ('maxResults', size)])}",
        "maxResults": size,
        "startAt": start,
        "total": len(rows),
        "isLast": is_last,
        "values": page,
    }
    if not is_last:
        body["nextPage"] = (
            f"{base}?{urlencode([*params, ('startAt', start + size), ('maxResults', size)])}"
        )
    return body


Handler = Callable[["Call"], Awaitable[object]]
# Cloud serves the deprecated unpaged /priority and /resolution beside their searches.
CLOUD_REFERENCE_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/issuetype", issue_type_list, ("GET",)),
    ("/priority/search", priority_search, ("GET",)),
    ("/priority", priority_list, ("GET",)),
    ("/resolution/search", resolution_search, ("GET",)),
    ("/resolution", resolution_list, ("GET",)),
    ("/statuscategory", status_category_list, ("GET",)),
)
DATACENTER_REFERENCE_ENDPOINTS: tuple[tuple[str, Handler, tuple[str, ...]], ...] = (
    ("/issuetype", issue_type_list, ("GET",)),
    ("/priority", priority_list, ("GET",)),
    ("/resolution", resolution_list, ("GET",)),
    ("/statuscategory", status_category_list, ("GET",)),
)


def reference_admin_routes(site: FakeJiraSite) -> list[Route]:
    """`DELETE /_fake/reference/{kind}/{id}` removes a row from its listing (issues still carry
    it, as after a deletion Jira has not finished migrating); `POST .../restore` brings it back."""
    known = {
        "issuetype": {tid for tid, *_ in ISSUE_TYPES},
        "priority": {pid for pid, *_ in PRIORITIES},
        "resolution": {rid for rid, *_ in RESOLUTIONS},
        "statuscategory": {str(c[0]) for c in (NO_CATEGORY, *STATUS_CATEGORIES.values())},
    }

    async def change(request: Request) -> Response:
        kind, row_id = request.path_params["kind"], request.path_params["id"]
        if row_id not in known.get(kind, set()):
            body = {"errorMessages": [f"No {kind} {row_id}"], "errors": {}}
            return Response(orjson.dumps(body), status_code=404, media_type=_JSON)
        if request.method == "DELETE":
            site.data.removed_reference.add((kind, row_id))
        else:
            site.data.removed_reference.discard((kind, row_id))
        site.data.version += 1
        removed = sorted(f"{k}/{i}" for k, i in site.data.removed_reference)
        return Response(orjson.dumps({"removed": removed}), media_type=_JSON)

    return [
        Route("/_fake/reference/{kind}/{id}", change, methods=["DELETE"]),
        Route("/_fake/reference/{kind}/{id}/restore", change, methods=["POST"]),
    ]
