"""Comment threads beyond the seed: the admin API adds, edits and deletes comments (each bumps
the issue's `updated`, as Jira does) and `/issue/{id}/comment` pages the whole thread."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.render import SiteRenderer, adf, adf_text, is_adf, jira_time
from jira_pipeline.fakejira.site import AdminError

if TYPE_CHECKING:
    from jira_pipeline.fakejira.dataset import Dataset, Issue
    from jira_pipeline.fakejira.site import FakeJiraSite

COMMENT_ORDERS = ("created", "+created", "-created")
COMMENT_PAGE_CAP = 100  # comments a page of /issue/{id}/comment holds at most
_JSON = "application/json;charset=UTF-8"


@dataclass
class AddedComment:
    id: str
    author: int  # index into users
    created_ms: int
    body: dict  # ADF


@dataclass
class CommentEdit:
    body: dict  # ADF
    updated_ms: int
    author: int


@dataclass
class CommentThread:
    """What the admin API changed in one issue's comments."""

    added: list[AddedComment] = field(default_factory=list)
    edits: dict[str, CommentEdit] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def comments(self, renderer: SiteRenderer, issue: Issue) -> list[dict]:
        """Every live comment, oldest first."""
        listed = list(renderer.generated_comments(issue, None)["comments"])
        for added in self.added:
            author = renderer.users[added.author]
            listed.append({
                "self": f"{renderer.rest}/issue/{issue.id}/comment/{added.id}",
                "id": added.id, "author": author, "body": renderer.rich_text(added.body),
                "updateAuthor": author, "created": jira_time(added.created_ms, issue.offset),
                "updated": jira_time(added.created_ms, issue.offset), "jsdPublic": True,
            })  # fmt: skip
        shown = []
        for comment in listed:
            if comment["id"] in self.deleted:
                continue
            edit = self.edits.get(comment["id"])
            if edit is not None:
                comment = {**comment, "body": renderer.rich_text(edit.body),
                           "updateAuthor": renderer.users[edit.author],
                           "updated": jira_time(edit.updated_ms, issue.offset)}
            shown.append(comment)
        return shown

    def block(self, renderer: SiteRenderer, issue: Issue, limit: int | None) -> dict:
        comments = self.comments(renderer, issue)
        shown = comments if limit is None else comments[:limit]
        return {"comments": shown, "self": f"{renderer.rest}/issue/{issue.id}/comment",
                "maxResults": len(shown), "total": len(comments), "startAt": 0}


@dataclass
class CommentLedger:
    """The site's comment changes, and the one-shot paging faults of /issue/{id}/comment."""

    threads: dict[int, CommentThread] = field(default_factory=dict)
    short_pages: int = 0  # the next pages holding two or more comments lose their first half
    next_id: int = 2_000_000_000  # above every generated comment id


def ledger_of(data: Dataset) -> CommentLedger:
    if data.comment_ledger is None:
        data.comment_ledger = CommentLedger()
    return data.comment_ledger


def comment_page(renderer: SiteRenderer, data: Dataset, issue: Issue, *, start: int, size: int,
                 order: str, expand: str) -> dict:
    """One PageOfComments of the whole thread, ordered by `created` (`-created`: newest first)."""
    comments = renderer.comments(issue, limit=None)["comments"]
    if order == "-created":
        comments = comments[::-1]
    start, size = max(0, start), min(max(0, size), COMMENT_PAGE_CAP)
    page = comments[start:start + size]
    ledger = data.comment_ledger
    if ledger is not None and ledger.short_pages > 0 and len(page) >= 2:
        # A page that comes back short: its first half is missing, startAt and total unchanged.
        ledger.short_pages -= 1
        page = page[len(page) // 2:]
    if "renderedBody" in {e.strip() for e in expand.split(",")}:
        page = [{**c, "renderedBody": _html(c["body"])} for c in page]
    return {"startAt": start, "maxResults": size, "total": len(comments), "comments": page}


def _html(body: Any) -> str:
    text = adf_text(body) if is_adf(body) else str(body or "")
    return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p)


# --- admin changes --------------------------------------------------------------------------


def _adf_body(body: Any) -> dict:
    if isinstance(body, str) and body:
        return adf([body])
    if is_adf(body):
        return body
    raise AdminError(400, "body must be a non-empty string or an ADF document")


def _author(site: FakeJiraSite, account_id: Any) -> int:
    if account_id is None:
        return site.myself_index()
    for index, user in enumerate(site.data.users):
        if account_id in (user.account_id, user.name):
            return index
    raise AdminError(404, f"No user with account id {account_id!r}")


def _edited(site: FakeJiraSite, issue: Issue) -> int:
    """Bump the issue's `updated` (a comment change is an issue change); the new `updated`."""
    site._before_change(issue)
    now = max(site.clock.now_ms(), issue.updated + 1)
    issue.updated = now
    site._changed(issue)
    return now


def _live_comment(site: FakeJiraSite, issue: Issue, comment_id: str) -> None:
    renderer = site.renderer("http://fake", "3")
    if not any(c["id"] == comment_id for c in renderer.comments(issue, limit=None)["comments"]):
        raise AdminError(404, f"Issue {issue.key} has no comment {comment_id}")


def add_comment(site: FakeJiraSite, key: str, body: Any, author: Any = None) -> tuple[Issue, str]:
    issue = site.issue_by_key(key)
    text, writer = _adf_body(body), _author(site, author)
    ledger = ledger_of(site.data)
    comment_id = str(ledger.next_id)
    ledger.next_id += 1
    now = _edited(site, issue)
    ledger.threads.setdefault(issue.num, CommentThread()).added.append(
        AddedComment(comment_id, writer, now, text))
    return issue, comment_id


def edit_comment(site: FakeJiraSite, key: str, comment_id: str, body: Any,
                 author: Any = None) -> Issue:
    issue = site.issue_by_key(key)
    _live_comment(site, issue, comment_id)
    text, writer = _adf_body(body), _author(site, author)
    now = _edited(site, issue)
    ledger_of(site.data).threads.setdefault(issue.num, CommentThread()).edits[comment_id] = (
        CommentEdit(text, now, writer))
    return issue


def delete_comment(site: FakeJiraSite, key: str, comment_id: str) -> Issue:
    issue = site.issue_by_key(key)
    _live_comment(site, issue, comment_id)
    _edited(site, issue)
    ledger_of(site.data).threads.setdefault(issue.num, CommentThread()).deleted.add(comment_id)
    return issue


def comment_admin_routes(site: FakeJiraSite) -> list[Route]:
    """/_fake/issues/{key}/comments[/{id}] (add, edit, delete) and /_fake/comments/config."""

    def answer(body: object, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type=_JSON)

    def admin(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except AdminError as error:
                return answer({"errorMessages": [str(error)], "errors": {}}, error.status)
            except (ValueError, TypeError, KeyError) as error:
                return answer({"errorMessages": [f"Bad admin request: {error}"], "errors": {}},
                              400)
        return endpoint

    async def body_of(request: Request) -> dict:
        raw = await request.body()
        body = orjson.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise AdminError(400, "Body must be a JSON object.")
        return body

    def rendered(request: Request, issue: Issue, comment_id: str) -> dict:
        renderer = site.renderer(str(request.base_url).rstrip("/"), "3")
        comment = next(c for c in renderer.comments(issue, limit=None)["comments"]
                       if c["id"] == comment_id)
        return {**comment, "issueKey": issue.key,
                "issueUpdated": jira_time(issue.updated, 0)}

    async def add(request: Request) -> Response:
        body = await body_of(request)
        issue, comment_id = add_comment(site, request.path_params["key"], body.get("body"),
                                        body.get("author"))
        return answer(rendered(request, issue, comment_id), 201)

    async def change(request: Request) -> Response:
        key, comment_id = request.path_params["key"], request.path_params["id"]
        if request.method == "DELETE":
            delete_comment(site, key, comment_id)
            return Response(status_code=204)
        body = await body_of(request)
        issue = edit_comment(site, key, comment_id, body.get("body"), body.get("author"))
        return answer(rendered(request, issue, comment_id))

    async def config(request: Request) -> Response:
        ledger = ledger_of(site.data)
        if request.method == "POST":
            body = await body_of(request)
            short = int(body.get("short_pages", ledger.short_pages))
            if short < 0:
                raise AdminError(400, "short_pages must not be negative")
            ledger.short_pages = short
        return answer({"short_pages": ledger.short_pages})

    return [
        Route("/_fake/issues/{key}/comments", admin(add), methods=["POST"]),
        Route("/_fake/issues/{key}/comments/{id}", admin(change), methods=["PUT", "DELETE"]),
        Route("/_fake/comments/config", admin(config), methods=["GET", "POST"]),
    ]
