"""Complete issue changelogs: Cloud's `changelog/bulkfetch` over up to 1,000 issues a call, Data
Center's whole changelog per issue, and Jira's own count of an issue's histories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from jira_pipeline.jira._exceptions import JiraNotFound, JiraPaginationError, JiraResponseError
from jira_pipeline.jira.client import JiraClient

BULK_CHANGELOG_ISSUES = 1000  # issues per bulkfetch call: Jira's maximum
BULK_CHANGELOG_PAGE = 1000  # histories per page: Jira's default maxResults (at most 10,000)
ISSUE_CHANGELOG_PAGE = 100  # Jira's cap for GET /issue/{id}/changelog


async def issue_histories(
    client: JiraClient,
    issue_ids: Sequence[str],
    *,
    field_ids: Sequence[str] = (),
    page_size: int = BULK_CHANGELOG_PAGE,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every history of every issue among `issue_ids`, as (issue id, Jira's history JSON):
    `issue_history_pages`, one history at a time."""
    async for page in issue_history_pages(client, issue_ids, field_ids=field_ids,
                                          page_size=page_size):
        for pair in page:
            yield pair


async def issue_history_pages(
    client: JiraClient,
    issue_ids: Sequence[str],
    *,
    field_ids: Sequence[str] = (),
    page_size: int = BULK_CHANGELOG_PAGE,
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Every history of every issue among `issue_ids`, a page of (issue id, history) at a time.

    Cloud: `POST /changelog/bulkfetch`, 1,000 issues a call, each call paged by `nextPageToken`
    over the histories of all its issues, oldest first (so ceil(N / 1000) + ceil(histories /
    page_size) requests). A page without a token ends its call; a token served twice, an empty
    page with a token, a page repeating the previous one or histories of an issue the call did
    not ask for raise JiraPaginationError naming the endpoint. Data Center has no bulkfetch:
    one `GET /issue/{id}?expand=changelog` per issue (which embeds the whole changelog there),
    as many in flight as the client's limiter allows. Issues Jira no longer has are left out.
    """
    ids = [str(issue_id) for issue_id in issue_ids]
    for issue_id in ids:
        if not issue_id.isdigit():
            raise ValueError(f"not a Jira issue id: {issue_id!r}")
    if client.deployment == "datacenter":
        async for page in _whole_changelogs(client, ids):
            yield page
        return
    for start in range(0, len(ids), BULK_CHANGELOG_ISSUES):
        chunk = ids[start:start + BULK_CHANGELOG_ISSUES]
        async for page in _bulk_changelog_call(client, chunk, list(field_ids), page_size):
            yield page


async def _bulk_changelog_call(
    client: JiraClient, chunk: list[str], field_ids: list[str], page_size: int
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    path = f"{client.api_prefix}/changelog/bulkfetch"
    where = f"POST {path}"
    asked = set(chunk)
    token: str | None = None
    seen_tokens: set[str] = set()
    previous: list[Any] | None = None
    pages = 0
    while True:
        request: dict[str, Any] = {"issueIdsOrKeys": chunk, "maxResults": page_size}
        if field_ids:
            request["fieldIds"] = field_ids
        if token is not None:
            request["nextPageToken"] = token
        body = await client.request_json("POST", path, json=request)
        pages += 1
        page = _page_histories(body, asked, where)
        ids = [history.get("id") for _, history in page]
        if page and ids == previous:
            raise JiraPaginationError(f"{where}: page {pages} repeats the previous page")
        previous = ids
        if page:
            yield page
        token = body.get("nextPageToken")
        if not token:
            return
        if token in seen_tokens:
            raise JiraPaginationError(
                f"{where}: nextPageToken {token!r} served again (page {pages}): the pages "
                "would loop"
            )
        seen_tokens.add(token)
        if not page:
            raise JiraPaginationError(
                f"{where}: an empty page (page {pages}) with a nextPageToken: the pages would "
                "never end"
            )


def _page_histories(body: Any, asked: set[str], where: str) -> list[tuple[str, dict[str, Any]]]:
    blocks = body.get("issueChangeLogs") if isinstance(body, dict) else None
    if not isinstance(blocks, list):
        raise JiraPaginationError(
            f"{where}: expected an object with a list `issueChangeLogs`, got "
            f"{type(body).__name__}"
        )
    page: list[tuple[str, dict[str, Any]]] = []
    for block in blocks:
        issue_id = str(block.get("issueId")) if isinstance(block, dict) else ""
        histories = block.get("changeHistories") if isinstance(block, dict) else None
        if issue_id not in asked:
            raise JiraPaginationError(
                f"{where}: histories of issue {issue_id or '?'}, which the call did not ask for"
            )
        if not isinstance(histories, list):
            raise JiraPaginationError(f"{where}: issue {issue_id} has no list `changeHistories`")
        page.extend((issue_id, history) for history in histories if isinstance(history, dict))
    return page


async def _whole_changelogs(
    client: JiraClient, ids: list[str]
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    width = max(1, client.limiter.max_in_flight)
    for start in range(0, len(ids), width):
        group = ids[start:start + width]
        changelogs = await asyncio.gather(*(whole_changelog(client, i) for i in group))
        page = [(issue_id, history) for issue_id, histories in zip(group, changelogs, strict=True)
                for history in histories or ()]
        if page:
            yield page


async def whole_changelog(client: JiraClient, issue_id: str) -> list[dict[str, Any]] | None:
    """Every history of one issue from `GET /issue/{id}?expand=changelog` (what Data Center
    embeds whole; Cloud embeds 100 at most, so a truncated block raises); None when Jira no
    longer has the issue."""
    path = f"{client.api_prefix}/issue/{issue_id}"
    try:
        body = await client.request_json(
            "GET", path, params={"fields": "created", "expand": "changelog"}
        )
    except JiraNotFound:
        return None
    changelog = body.get("changelog") if isinstance(body, dict) else None
    histories = changelog.get("histories") if isinstance(changelog, dict) else None
    if not isinstance(histories, list):
        raise JiraResponseError("answer has no list `changelog.histories`", method="GET",
                                path=path)
    total = changelog.get("total") if isinstance(changelog, dict) else None
    if isinstance(total, int) and total > len(histories):
        raise JiraPaginationError(
            f"GET {path}?expand=changelog: {len(histories)} of {total} histories embedded: "
            "this server truncates the changelog, so it cannot be had whole this way"
        )
    return [history for history in histories if isinstance(history, dict)]


@dataclass(frozen=True)
class ChangelogTail:
    """Jira's count of an issue's histories, and its histories from position `start` on (at
    most a page): what a completeness check compares with the stored ones."""

    total: int
    start: int
    histories: list[dict[str, Any]]


async def changelog_tail(client: JiraClient, issue_id: str, start: int) -> ChangelogTail | None:
    """Cloud: one `GET /issue/{id}/changelog?startAt=start` (its `total`, oldest first); Data
    Center: the whole embedded changelog. None when Jira no longer has the issue."""
    if client.deployment == "datacenter":
        histories = await whole_changelog(client, issue_id)
        if histories is None:
            return None
        return ChangelogTail(len(histories), start, histories[start:start + ISSUE_CHANGELOG_PAGE])
    path = f"{client.api_prefix}/issue/{issue_id}/changelog"
    try:
        body = await client.request_json(
            "GET", path, params={"startAt": start, "maxResults": ISSUE_CHANGELOG_PAGE}
        )
    except JiraNotFound:
        return None
    total = body.get("total") if isinstance(body, dict) else None
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(total, int) or not isinstance(values, list):
        raise JiraResponseError("answer has no integer `total` and list `values`",
                                method="GET", path=path)
    return ChangelogTail(total, start, [value for value in values if isinstance(value, dict)])


def history_document(
    connection_id: str, issue_id: str, issue_key: str | None, history: dict[str, Any]
) -> dict[str, Any]:
    """The stored form of one history: its key fields with Python-friendly names, Jira's JSON
    under `raw` (the storage layer parses `created` and refuses a history without an id)."""
    author = history.get("author")
    author = author if isinstance(author, dict) else {}
    items = history.get("items")
    items = items if isinstance(items, list) else []
    return {
        "connection_id": connection_id,
        "issue_id": str(issue_id),
        "issue_key": issue_key,
        "history_id": history.get("id"),
        # Cloud names people by accountId; Data Center by user key (or name on old servers).
        "author_account_id": author.get("accountId") or author.get("key") or author.get("name"),
        "created": history.get("created"),
        "items": [
            {
                "field": item.get("field"),
                "field_id": item.get("fieldId"),
                "field_type": item.get("fieldtype"),
                "from": item.get("from"),
                "from_string": item.get("fromString"),
                "to": item.get("to"),
                "to_string": item.get("toString"),
            }
            for item in items
            if isinstance(item, dict)
        ],
        "raw": history,
    }
