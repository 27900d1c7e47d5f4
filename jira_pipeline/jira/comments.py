"""Issue comments: the record stored per comment, and an issue's whole thread from Jira."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from jira_pipeline.jira.adf import adf_to_text
from jira_pipeline.jira.models import JiraRecord, RecordRejected, _user_id
from jira_pipeline.timeutil import TimestampError, parse_jira_datetime

if TYPE_CHECKING:
    from jira_pipeline.jira.client import JiraClient

COMMENT_PAGE_SIZE = 100  # Jira's default and the most a page holds
# Pages one thread may take before the walk gives up (a server ignoring startAt would loop).
_MAX_PAGES = 10_000


class CommentRecord(JiraRecord):
    comment_id: str
    issue_id: str
    issue_key: str | None
    author_account_id: str | None
    update_author_account_id: str | None
    created: datetime | None
    updated: datetime | None
    body: Any  # ADF (Cloud v3) or plain text (v2, Data Center), as Jira sent it
    body_text: str | None
    visibility: dict[str, Any] | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        """`raw` is {"issue": {"id", "key"}, "comment": <Jira's Comment>}: a comment does not
        name its issue."""
        issue = raw.get("issue") if isinstance(raw, dict) else None
        comment = raw.get("comment") if isinstance(raw, dict) else None
        issue_id = issue.get("id") if isinstance(issue, dict) else None
        if not isinstance(comment, dict) or not comment.get("id") or not issue_id:
            raise RecordRejected(
                "comment without a usable `id` or issue: cannot store it",
                raw=raw, connection_id=connection_id, jira_id=None, key=None,
            )
        visibility = comment.get("visibility")
        return cls(
            connection_id=connection_id,
            raw=comment,
            comment_id=str(comment["id"]),
            issue_id=str(issue_id),
            issue_key=_text(issue.get("key") if isinstance(issue, dict) else None),
            author_account_id=_user_id(comment.get("author")),
            update_author_account_id=_user_id(comment.get("updateAuthor")),
            created=_moment(comment.get("created")),
            updated=_moment(comment.get("updated")),
            body=comment.get("body"),
            body_text=adf_to_text(comment.get("body")),
            visibility=visibility if isinstance(visibility, dict) else None,
        )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_jira_datetime(value)
    except TimestampError:
        return None


@dataclass(frozen=True)
class CommentThread:
    """An issue's comments as one listing: `complete` when it holds exactly the `total` Jira
    stated, each once. Only a complete listing proves a stored comment gone."""

    issue_id: str
    comments: list[dict[str, Any]]
    total: int | None
    pages: int = 0

    @property
    def complete(self) -> bool:
        return self.total is not None and len({c.get("id") for c in self.comments}) == self.total

    @classmethod
    def embedded(cls, issue_id: str, block: Any) -> CommentThread | None:
        """The issue's embedded `comment` block when it holds the whole thread (`total <=
        maxResults`, every comment present), else None: the thread must be fetched."""
        if not isinstance(block, dict):
            return None
        comments, total, shown = block.get("comments"), block.get("total"), block.get("maxResults")
        if not isinstance(comments, list) or not isinstance(total, int):
            return None
        if not isinstance(shown, int) or total > shown or block.get("startAt", 0) != 0:
            return None
        thread = cls(issue_id, [c for c in comments if isinstance(c, dict)], total)
        return thread if thread.complete else None


async def comment_thread(
    client: JiraClient, issue_id: str, page_size: int = COMMENT_PAGE_SIZE
) -> CommentThread:
    """Every comment of an issue, paged from `/issue/{id}/comment` by startAt until Jira's
    `total`. A page that comes back short or repeats comments leaves the listing incomplete
    (`complete` False) rather than failing: the caller stores what came and proves nothing gone.
    """
    seen: dict[str, dict[str, Any]] = {}
    start, total, pages = 0, None, 0
    while pages < _MAX_PAGES:
        page = await client.issue_comment_page(issue_id, start, page_size)
        pages += 1
        comments = [c for c in page["comments"] if isinstance(c, dict) and c.get("id")]
        stated = page.get("total")
        total = stated if isinstance(stated, int) else None
        for comment in comments:
            seen.setdefault(str(comment["id"]), comment)
        start += len(comments)
        if not comments or total is None or start >= total:
            break
    return CommentThread(issue_id, list(seen.values()), total, pages)
