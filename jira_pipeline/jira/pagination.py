"""Async page iterators, one per pagination style Jira uses; broken paging raises, never loops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jira_pipeline.jira._exceptions import JiraPaginationError

PageFetcher = Callable[[dict[str, Any]], Awaitable[Any]]
"""Fetches one page given its paging parameters (startAt/maxResults or nextPageToken)."""

DEFAULT_MAX_PAGES = 1_000_000


def _identity(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("id") or item.get("accountId") or item.get("key")
    return item


def _page_ids(items: list[Any]) -> list[Any]:
    return [_identity(item) for item in items]


def _items(body: Any, items_key: str | None, where: str) -> list[Any]:
    items = body if items_key is None else (body.get(items_key) if isinstance(body, dict) else None)
    if not isinstance(items, list):
        expected = "a JSON array" if items_key is None else f"an object with a list `{items_key}`"
        raise JiraPaginationError(f"{where}: expected {expected}, got {type(body).__name__}")
    return items


class _RepeatGuard:
    """Remembers the previous page so an identical one (a server stuck on a page) is caught."""

    def __init__(self, where: str, max_pages: int) -> None:
        self.where = where
        self.max_pages = max_pages
        self.pages = 0
        self.previous: list[Any] | None = None

    def check(self, items: list[Any]) -> None:
        self.pages += 1
        ids = _page_ids(items)
        if items and ids == self.previous:
            raise JiraPaginationError(f"{self.where}: page {self.pages} repeats the previous page")
        self.previous = ids
        if self.pages > self.max_pages:
            raise JiraPaginationError(f"{self.where}: more than {self.max_pages} pages, giving up")


async def offset_pages(
    fetch: PageFetcher,
    *,
    page_size: int,
    items_key: str = "values",
    where: str = "paged resource",
    max_pages: int = DEFAULT_MAX_PAGES,
) -> AsyncIterator[list[Any]]:
    """startAt/maxResults pages ending at `isLast`, or at `total` when `isLast` is absent.

    The same walk serves Data Center search (`items_key="issues"`, startAt/total only).
    """
    start_at = 0
    guard = _RepeatGuard(where, max_pages)
    while True:
        body = await fetch({"startAt": start_at, "maxResults": page_size})
        items = _items(body, items_key, where)
        served_from = body.get("startAt", start_at)
        if served_from != start_at:
            direction = "backwards" if served_from < start_at else "forwards"
            raise JiraPaginationError(
                f"{where}: asked for startAt={start_at}, got startAt={served_from} "
                f"(pages went {direction})"
            )
        guard.check(items)
        if items:
            yield items
        is_last = body.get("isLast")
        total = body.get("total")
        if is_last is True:
            return
        if not items:
            if is_last is False and isinstance(total, int) and total > start_at:
                raise JiraPaginationError(
                    f"{where}: empty page at startAt={start_at} but isLast=false and "
                    f"total={total}: the pages would never end"
                )
            return
        start_at += len(items)
        if is_last is None and isinstance(total, int) and start_at >= total:
            return


async def array_pages(
    fetch: PageFetcher,
    *,
    page_size: int,
    where: str = "paged array",
    max_pages: int = DEFAULT_MAX_PAGES,
) -> AsyncIterator[list[Any]]:
    """Bare JSON-array pages (users): a page shorter than asked for is the last one."""
    start_at = 0
    guard = _RepeatGuard(where, max_pages)
    while True:
        items = _items(await fetch({"startAt": start_at, "maxResults": page_size}), None, where)
        guard.check(items)
        if items:
            yield items
        if len(items) < page_size:
            return
        start_at += len(items)


async def token_pages(
    fetch: PageFetcher,
    *,
    page_size: int,
    items_key: str = "issues",
    where: str = "search",
    max_pages: int = DEFAULT_MAX_PAGES,
) -> AsyncIterator[list[Any]]:
    """`nextPageToken`/`isLast` pages (Cloud search/jql)."""
    token: str | None = None
    seen_tokens: set[str] = set()
    guard = _RepeatGuard(where, max_pages)
    while True:
        params: dict[str, Any] = {"maxResults": page_size}
        if token is not None:
            params["nextPageToken"] = token
        body = await fetch(params)
        items = _items(body, items_key, where)
        guard.check(items)
        if items:
            yield items
        token = body.get("nextPageToken")
        if body.get("isLast") is True or not token:
            return
        if token in seen_tokens:
            raise JiraPaginationError(f"{where}: nextPageToken repeated: the pages would loop")
        seen_tokens.add(token)
        if not items:
            raise JiraPaginationError(f"{where}: empty page that is not the last one")
