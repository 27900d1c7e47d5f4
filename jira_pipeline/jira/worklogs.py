"""Jira's worklog feeds: what changed since a moment (`/worklog/updated`, `/worklog/deleted`),
the worklogs of a list of ids (`/worklog/list`), and one issue's worklogs (Data Center)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from jira_pipeline.jira._exceptions import JiraPaginationError, JiraResponseError
from jira_pipeline.jira.client import JiraClient
from jira_pipeline.jira.models import (
    FieldReader,
    JiraRecord,
    RecordRejected,
    _required_id,
    _user_id,
)
from jira_pipeline.jira.pagination import offset_pages

LIST_MAX_IDS = 1000  # ids `/worklog/list` takes per request
ISSUE_PAGE_SIZE = 5000  # `/issue/{id}/worklog`'s maxResults default (and what it serves)
MAX_FEED_PAGES = 100_000


@dataclass(frozen=True)
class ChangedWorklogs:
    """One page of a worklog feed: (worklog id, changed at, epoch ms) pairs, oldest first, and
    the youngest moment the page covers (Jira's `until`)."""

    changes: list[tuple[str, int]]
    until: int
    last_page: bool


async def changed_worklogs(
    client: JiraClient, feed: Literal["updated", "deleted"], since: int
) -> AsyncIterator[ChangedWorklogs]:
    """Every page of `/worklog/{feed}?since=`, following `nextPage` until `lastPage`.

    Jira leaves out the changes of the minute before the request, and each page's `nextPage`
    starts at the page's youngest change, so pages may repeat a change at their boundary. A
    `nextPage` that does not move `since` forward (more than a page of changes in one
    millisecond, or a server that ignores `since`) would loop forever: it raises instead.
    """
    path = f"{client.api_prefix}/worklog/{feed}"
    where = f"GET {path}"
    for _ in range(MAX_FEED_PAGES):
        body = await client.request_json("GET", path, params={"since": since})
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise JiraResponseError("answer has no list `values`", method="GET", path=path)
        changes = []
        for value in body["values"]:
            worklog_id, changed = (value.get("worklogId"), value.get("updatedTime")) \
                if isinstance(value, dict) else (None, None)
            if not isinstance(worklog_id, int) or not isinstance(changed, int):
                raise JiraResponseError(f"a change without integer worklogId and updatedTime: "
                                        f"{value!r}"[:200], method="GET", path=path)
            changes.append((str(worklog_id), changed))
        until = body.get("until")
        youngest = max((changed for _, changed in changes), default=since)
        if not isinstance(until, int):
            until = youngest
        last_page = body.get("lastPage") is True
        yield ChangedWorklogs(changes, until, last_page)
        if last_page:
            return
        next_since = _since_of(body.get("nextPage"))
        if next_since is None:
            raise JiraPaginationError(
                f"{where}: lastPage is false but nextPage has no `since`: the feed cannot go on")
        if next_since <= since:
            raise JiraPaginationError(
                f"{where}: nextPage (since={next_since}) does not move past since={since}: more "
                "than a page of worklog changes in one millisecond, or since is ignored; the "
                "feed would never end")
        since = next_since
    raise JiraPaginationError(f"{where}: more than {MAX_FEED_PAGES} pages, giving up")


def _since_of(url: Any) -> int | None:
    if not isinstance(url, str):
        return None
    values = parse_qs(urlsplit(url).query).get("since")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None


async def worklogs_by_id(
    client: JiraClient, worklog_ids: Sequence[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The worklogs among `worklog_ids`, 1,000 a request (`POST /worklog/list`). Jira leaves out
    the ones deleted since they were listed (and those the account may not see)."""
    path = f"{client.api_prefix}/worklog/list"
    ids = list(dict.fromkeys(int(worklog_id) for worklog_id in worklog_ids))
    for start in range(0, len(ids), LIST_MAX_IDS):
        body = await client.request_json(
            "POST", path, json={"ids": ids[start : start + LIST_MAX_IDS]})
        if not isinstance(body, list):
            raise JiraResponseError("expected a JSON array of worklogs", method="POST", path=path)
        yield body


async def issue_worklogs(client: JiraClient, issue_id: str) -> AsyncIterator[dict[str, Any]]:
    """Every worklog of one issue (`GET /issue/{id}/worklog`, startAt/maxResults pages)."""
    path = f"{client.api_prefix}/issue/{issue_id}/worklog"

    async def fetch(paging: dict[str, Any]) -> Any:
        return await client.request_json("GET", path, params=paging)

    async for page in offset_pages(fetch, page_size=ISSUE_PAGE_SIZE, items_key="worklogs",
                                   where=f"GET {path}"):
        for worklog in page:
            yield worklog


class WorklogRecord(JiraRecord):
    """One worklog: who logged how long on which issue, when; Jira's JSON under `raw`."""

    worklog_id: str
    issue_id: str | None
    author_account_id: str | None
    update_author_account_id: str | None
    started: datetime | None
    time_spent_seconds: int | None
    comment: str | None  # plain text (Cloud v3 sends ADF: its text, paragraphs blank-line apart)
    created: datetime | None
    updated: datetime

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        """The record of one worklog; RecordRejected without an id or a usable `updated` (it
        could not be version-guarded: a stale answer could overwrite a newer copy)."""
        raw, worklog_id = _required_id(raw, connection_id, "worklog")
        read = FieldReader(raw)
        updated = read.timestamp("updated", "updated")
        if updated is None:
            raise RecordRejected(
                f"worklog {worklog_id} has no usable `updated`: it cannot be version-guarded",
                raw=raw, connection_id=connection_id, jira_id=worklog_id, key=None,
            )
        seconds = raw.get("timeSpentSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            read.nulled.append("time_spent_seconds")
            seconds = None
        return cls(
            connection_id=connection_id,
            raw=raw,
            worklog_id=worklog_id,
            issue_id=read.text("issue_id", "issueId"),
            author_account_id=_user_id(read.obj("author_account_id", "author")),
            update_author_account_id=_user_id(
                read.obj("update_author_account_id", "updateAuthor")),
            started=read.timestamp("started", "started"),
            time_spent_seconds=seconds,
            comment=plain_text(raw.get("comment")),
            created=read.timestamp("created", "created"),
            updated=updated,
            nulled_fields=tuple(dict.fromkeys(read.nulled)),
        )


def plain_text(body: Any) -> str | None:
    """Rich text as plain text: an ADF document's text nodes (block nodes blank-line apart), a
    v2 string as it is."""
    if body is None or isinstance(body, str):
        return body
    if not isinstance(body, dict):
        return None

    def text_of(node: Any) -> str:
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        return "".join(text_of(child) for child in node.get("content") or [])

    blocks = [text_of(node) for node in body.get("content") or []]
    return "\n\n".join(block for block in blocks if block)
