"""`comment_thread`: an issue's whole comment thread paged over HTTP from the fake Jira; a short
page leaves it incomplete instead of passing for the whole thread."""

from __future__ import annotations

import asyncio
from typing import Any

from jira_pipeline.jira import BasicAuth, JiraClient, RateLimiter
from jira_pipeline.jira.comments import CommentThread, comment_thread


def heavy_issue(fake: Any) -> tuple[str, int]:
    """An issue with more comments than Jira embeds, and its comment count."""
    renderer = fake.site.renderer(fake.base_url)
    issue = next(i for i in fake.site.data.issues if i.comments > 20)
    return str(issue.id), renderer.comments(issue, None)["total"]


def thread_of(fake: Any, issue_id: str, page_size: int) -> CommentThread:
    async def walk() -> CommentThread:
        auth = BasicAuth(fake.config.email, fake.config.api_token)
        async with JiraClient(auth, fake.base_url, limiter=RateLimiter(0.0, 4)) as client:
            return await comment_thread(client, issue_id, page_size)

    return asyncio.run(walk())


def test_a_thread_is_paged_until_jiras_total(fake_jira: Any) -> None:
    issue_id, total = heavy_issue(fake_jira)

    thread = thread_of(fake_jira, issue_id, 7)

    assert thread.complete and thread.total == total == len(thread.comments)
    assert thread.pages == -(-total // 7)
    assert len({c["id"] for c in thread.comments}) == total


def test_a_short_page_leaves_the_thread_incomplete(fake_jira: Any) -> None:
    issue_id, total = heavy_issue(fake_jira)
    fake_jira.admin.shorten_comment_pages(1)

    thread = thread_of(fake_jira, issue_id, 10)

    assert thread.total == total and not thread.complete
    assert len(thread.comments) == total - 5  # the first page's first half never came


def test_an_embedded_block_counts_only_when_it_holds_the_whole_thread() -> None:
    whole = {"startAt": 0, "maxResults": 2, "total": 2, "comments": [{"id": "1"}, {"id": "2"}]}
    assert CommentThread.embedded("10", whole) is not None
    assert CommentThread.embedded("10", {**whole, "total": 3}) is None  # truncated
    assert CommentThread.embedded("10", {**whole, "comments": [{"id": "1"}]}) is None
    assert CommentThread.embedded("10", None) is None
    empty = CommentThread.embedded("10", {"startAt": 0, "maxResults": 0, "total": 0,
                                          "comments": []})
    assert empty is not None and empty.complete
