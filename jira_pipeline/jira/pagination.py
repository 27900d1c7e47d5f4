"""Async page iterators, one per pagination style Jira uses; broken paging raises, never loops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from jira_pipeline.jira._exceptions import JiraBadRequest, JiraPaginationError

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
            if isinstance(total, int) and total > start_at:
                # Data Center states no isLast: an empty page before `total` ends pages early.
                raise JiraPaginationError(
                    f"{where}: empty page at startAt={start_at} but total={total}: the pages "
                    "end early"
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


KeysetFetcher = Callable[[int | None], Awaitable[Any]]
"""Fetches the first page of the issues whose id is above the given one (None: from the start)."""


def _issue_id(item: Any, where: str) -> int:
    value = item.get("id") if isinstance(item, dict) else None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise JiraPaginationError(f"{where}: an issue without a numeric id: {value!r}") from None


@dataclass
class KeysetPosition:
    """Where a keyset walk stands when it hands over a page: the last id walked and whether
    that page was the last one (a walk may be resumed above `after` by another JQL)."""

    after: int | None = None
    last: bool = False


async def keyset_pages(
    fetch: KeysetFetcher,
    *,
    page_size: int,
    style: Literal["token", "offset"],
    where: str = "search",
    max_pages: int = DEFAULT_MAX_PAGES,
    after: int | None = None,
    position: KeysetPosition | None = None,
) -> AsyncIterator[list[Any]]:
    """Issue pages in ascending id order, each asked for as `id > <last id walked>`.

    Edits, creates and deletes during the walk neither skip nor repeat an issue: a page never
    depends on an offset or on a token that remembers one. The walk is complete when every page
    chained and the ids rose strictly; an answer that breaks the chain raises
    JiraPaginationError instead of ending the walk quietly:
    - `style="token"` (Cloud search/jql): `isLast: false` without a `nextPageToken`, or an empty
      page that is not the last. A page shorter than asked is fine (Jira documents it).
    - `style="offset"` (Data Center search): a page shorter than Jira's stated `total` and its
      own `maxResults` (the pages would end early).
    The walk starts above `after` (None: from the lowest id); `position`, when given, is kept
    up to date before each page is handed over.
    """
    earlier: list[int] = []  # the previous page's other ids: anchors if `after` was deleted
    pages = 0
    while True:
        body = await _fetch_after(fetch, after, earlier, where)
        served = _items(body, "issues", where)
        # Above an earlier anchor (see _fetch_after) the page starts with ids already walked.
        items = [item for item in served if after is None or _issue_id(item, where) > after]
        pages += 1
        if pages > max_pages:
            raise JiraPaginationError(f"{where}: more than {max_pages} pages, giving up")
        previous = after
        for item in items:
            issue_id = _issue_id(item, where)
            if previous is not None and issue_id <= previous:
                raise JiraPaginationError(
                    f"{where}: issue id {issue_id} came after {previous}: the ids did not rise "
                    "strictly (ORDER BY id or the id bound was not applied)"
                )
            previous = issue_id
        if style == "token":
            is_last = body.get("isLast")
            token = body.get("nextPageToken")
            if is_last is False and not token:
                raise JiraPaginationError(
                    f"{where}: isLast is false but the page has no nextPageToken "
                    f"(page {pages}, after id {after}): the walk would end early"
                )
            last = is_last is True or (is_last is None and not token)
            if not last and not items:
                raise JiraPaginationError(f"{where}: empty page that is not the last one")
        else:
            total = body.get("total")
            if not isinstance(total, int):
                raise JiraPaginationError(f"{where}: a search page without an integer `total`")
            served_from = body.get("startAt", 0)
            if served_from != 0:
                raise JiraPaginationError(f"{where}: asked for startAt=0, got {served_from}")
            limit = body.get("maxResults")
            limit = limit if isinstance(limit, int) and limit > 0 else page_size
            if len(served) < min(total, limit):
                raise JiraPaginationError(
                    f"{where}: a page of {len(served)} issue(s) (page {pages}, after id {after}) "
                    f"where Jira states {total} match in pages of {limit}: the pages end early"
                )
            last = len(served) >= total
        if position is not None:
            position.after, position.last = previous, last
        if items:
            yield items
        if last:
            return
        earlier = [_issue_id(item, where) for item in items[-_ANCHORS - 1 : -1]]
        after = previous


_ANCHORS = 3  # earlier ids of a page tried when the last one vanished before the next page


async def _fetch_after(fetch: KeysetFetcher, after: int | None, earlier: list[int],
                       where: str) -> Any:
    """The page above `after`. Jira resolves the id in `id > N` to an issue: when that issue
    was deleted since the previous page, Cloud answers no issues and Data Center a 400, which
    would end the walk early or fail it. An empty or refused answer is asked again from the
    previous page's earlier ids (latest first; what is not above `after` is dropped)."""
    try:
        body = await fetch(after)
        if after is None or not earlier or _has_issues(body):
            return body
    except JiraBadRequest:
        if after is None or not earlier:
            raise
    for anchor in reversed(earlier):
        try:
            body = await fetch(anchor)
        except JiraBadRequest:
            continue
        return body
    raise JiraPaginationError(
        f"{where}: no page could be had above id {after} nor above the ids before it "
        f"({', '.join(map(str, earlier))}): the walk cannot continue"
    )


def _has_issues(body: Any) -> bool:
    return isinstance(body, dict) and bool(body.get("issues"))
