"""The fake's issue links: a seeded share of issues linked by Jira's four default link types,
each link rendered on both issues (`outwardIssue` on one, `inwardIssue` on the other, one id),
`/issueLinkType`, and admin routes that add and remove a link now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.dataset import Dataset, History, Issue

if TYPE_CHECKING:
    from jira_pipeline.fakejira.app import Call
    from jira_pipeline.fakejira.render import SiteRenderer
    from jira_pipeline.fakejira.site import FakeJiraSite

_JSON = "application/json;charset=UTF-8"
# Jira Cloud's default link types: (id, name, inward, outward).
LINK_TYPES: tuple[tuple[str, str, str, str], ...] = (
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
)
LINKED_SHARE = 8  # one issue in eight links to an earlier issue of the site
FIRST_ADDED_ID = 1_000_000  # ids of links added through the admin API start here


@dataclass
class LinkBook:
    """Every live link: id -> (type index, outward issue num, inward issue num)."""

    links: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    by_issue: dict[int, list[int]] = field(default_factory=dict)
    next_id: int = FIRST_ADDED_ID

    def add(self, link_id: int, kind: int, outward: int, inward: int) -> None:
        self.links[link_id] = (kind, outward, inward)
        self.by_issue.setdefault(outward, []).append(link_id)
        self.by_issue.setdefault(inward, []).append(link_id)

    def remove(self, link_id: int) -> tuple[int, int, int]:
        kind, outward, inward = self.links.pop(link_id)
        for num in (outward, inward):
            self.by_issue[num].remove(link_id)
        return kind, outward, inward


def link_book(data: Dataset) -> LinkBook:
    """The site's links, generated from the issues' seeds on first use (the dataset's random
    stream is left alone, so every other generated figure stays as it was)."""
    book = data.link_book
    if book is None:
        book = LinkBook()
        for issue in data.issues:
            if issue.num == 0 or issue.seed % LINKED_SHARE:
                continue
            other = issue.num - 1 - (issue.seed >> 8) % min(issue.num, 40)
            book.add(10_000 + issue.num, (issue.seed >> 4) % len(LINK_TYPES), issue.num, other)
        data.link_book = book
    return book


def link_type(renderer: SiteRenderer, kind: int) -> dict:
    tid, name, inward, outward = LINK_TYPES[kind]
    return {"id": tid, "name": name, "inward": inward, "outward": outward,
            "self": f"{renderer.rest}/issueLinkType/{tid}"}


def issue_links(renderer: SiteRenderer, issue: Issue) -> list[dict]:
    """The issue's `issuelinks`: the other issue on the side Jira names it (an issue that
    blocks another carries it as `outwardIssue`); links to deleted issues are left out."""
    data = renderer.data
    book = link_book(data)
    out = []
    for link_id in book.by_issue.get(issue.num, ()):
        kind, outward, inward = book.links[link_id]
        other = data.issues[inward if outward == issue.num else outward]
        if other.deleted:
            continue
        side = "outwardIssue" if outward == issue.num else "inwardIssue"
        out.append({"id": str(link_id), "self": f"{renderer.rest}/issueLink/{link_id}",
                    "type": link_type(renderer, kind), side: renderer.issue_ref(other)})
    return out


async def link_type_list(call: Call) -> object:
    return {"issueLinkTypes": [link_type(call.renderer, k) for k in range(len(LINK_TYPES))]}


LINK_TYPE_ENDPOINTS = (("/issueLinkType", link_type_list, ("GET",)),)


def link_admin_routes(site: FakeJiraSite) -> list[Route]:
    """`POST /_fake/links` {type (name or id), outward, inward (keys)} links two issues now and
    `DELETE /_fake/links/{id}` removes a link: both issues' `updated` moves to now and each
    gains a "Link" changelog history, as in Jira."""

    def answer(body: dict, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type=_JSON)

    def record(issue: Issue, other: Issue, phrase: str, added: bool) -> None:
        data = site.data
        site._before_change(issue)
        now = max(site.clock.now_ms(), issue.updated + 1)
        text = f"This issue {phrase} {other.key}"
        item = (("Link", "jira", "issuelinks", None, None, other.key, text) if added
                else ("Link", "jira", "issuelinks", other.key, text, None, None))
        history = History(id=str(data.next_history_id), author=site.myself_index(),
                          created_ms=now, offset=issue.offset, items=(item,))
        data.next_history_id += 1
        issue.extra_histories = [*(issue.extra_histories or []), history]
        issue.updated = now
        site._changed(issue)

    def phrases(kind: int) -> tuple[str, str]:
        _, _, inward, outward = LINK_TYPES[kind]
        return outward, inward

    async def add(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        wanted = str(body.get("type", ""))
        kind = next((k for k, t in enumerate(LINK_TYPES) if wanted in (t[0], t[1])), None)
        issues = [site.data.by_key.get(str(body.get(side, "")).upper())
                  for side in ("outward", "inward")]
        if kind is None or any(i is None or i.deleted for i in issues):
            return answer({"errorMessages": ["Give type (a link type name or id) and the "
                                             "outward and inward keys of live issues"],
                           "errors": {}}, 400)
        outward, inward = (i for i in issues if i is not None)
        book = link_book(site.data)
        link_id = book.next_id
        book.next_id += 1
        book.add(link_id, kind, outward.num, inward.num)
        out_phrase, in_phrase = phrases(kind)
        record(outward, inward, out_phrase, True)
        record(inward, outward, in_phrase, True)
        return answer({"id": str(link_id)})

    async def remove(request: Request) -> Response:
        book = link_book(site.data)
        raw = request.path_params["id"]
        link_id = int(raw) if raw.isdigit() else -1
        if link_id not in book.links:
            return answer({"errorMessages": [f"No issue link with id {raw}"], "errors": {}}, 404)
        kind, out_num, in_num = book.remove(link_id)
        outward, inward = site.data.issues[out_num], site.data.issues[in_num]
        out_phrase, in_phrase = phrases(kind)
        for issue, other, phrase in ((outward, inward, out_phrase), (inward, outward, in_phrase)):
            if not issue.deleted:
                record(issue, other, phrase, False)
        return answer({"id": raw})

    return [
        Route("/_fake/links", add, methods=["POST"]),
        Route("/_fake/links/{id}", remove, methods=["DELETE"]),
    ]


def link_row_count(renderer: SiteRenderer) -> dict[str, int]:
    """How many rows `jira_issue_links` should hold: each live link once on each live issue
    (the demo's expected count)."""
    data = renderer.data
    book = link_book(data)
    rows = sum(1 for _, outward, inward in book.links.values()
               if not data.issues[outward].deleted and not data.issues[inward].deleted)
    return {"jira_issue_links": 2 * rows}
