"""Safe JQL: windows bounded on both sides in epoch milliseconds, quoted keys, fenced user JQL."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from jira_pipeline.jira._exceptions import JqlError
from jira_pipeline.timeutil import from_epoch_ms, to_epoch_ms

# Jira project keys: an uppercase letter, then uppercase letters, digits or underscores.
_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_OUR_ORDER_BY = re.compile(r"\s+ORDER BY (updated|created|key|id) (ASC|DESC)$")


@dataclass(frozen=True)
class IssueWindow:
    """A half-open interval [start, end) of `updated` times, both ends aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("IssueWindow needs timezone-aware datetimes")
        if self.end <= self.start:
            raise ValueError(f"IssueWindow ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def from_epoch_ms(cls, start_ms: int, end_ms: int) -> IssueWindow:
        return cls(from_epoch_ms(start_ms), from_epoch_ms(end_ms))

    @property
    def start_ms(self) -> int:
        return to_epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_epoch_ms(self.end)

    def widened(self, before: timedelta, after: timedelta = timedelta(0)) -> IssueWindow:
        """The window with a lookback overlap, so boundaries are re-read (writes are idempotent)."""
        return IssueWindow(self.start - before, self.end + after)

    def split(self, parts: int) -> list[IssueWindow]:
        """`parts` adjacent windows of equal length (millisecond boundaries) covering this one."""
        if parts < 1:
            raise ValueError("parts must be at least 1")
        start, end = self.start_ms, self.end_ms
        parts = min(parts, end - start)
        bounds = [start + (end - start) * i // parts for i in range(parts)] + [end]
        return [IssueWindow.from_epoch_ms(a, b) for a, b in pairwise(bounds)]


def quote_project_key(key: str) -> str:
    """A project key checked against Jira's key syntax, then quoted for JQL."""
    if not isinstance(key, str) or not _PROJECT_KEY.match(key):
        raise JqlError(
            f"not a Jira project key: {key!r} (expected an uppercase letter followed by "
            "uppercase letters, digits or underscores)"
        )
    return f'"{key}"'


def project_clause(keys: Iterable[str]) -> str:
    quoted = [quote_project_key(key) for key in keys]
    if not quoted:
        raise JqlError("an empty list of project keys would match nothing")
    if len(quoted) == 1:
        return f"project = {quoted[0]}"
    return f"project in ({', '.join(quoted)})"


def fence_user_jql(jql: str) -> str:
    """User JQL in parentheses, refused when it could escape them or reorder our results.

    Parentheses are balanced outside string literals, quotes are closed, and `ORDER BY` is ours:
    `status = Done) OR (project = SECRET` cannot widen what it is ANDed with.
    """
    if not jql.strip():
        raise JqlError("JQL is empty")
    depth = 0
    outside: list[str] = []
    quote: str | None = None
    escaped = False
    for char in jql:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'":
            quote = char
            outside.append(" ")
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise JqlError(f"JQL closes a parenthesis it never opened: {jql!r}")
        outside.append(char)
    if quote is not None:
        raise JqlError(f"JQL has an unterminated string literal: {jql!r}")
    if depth != 0:
        raise JqlError(f"JQL has unbalanced parentheses: {jql!r}")
    if _ORDER_BY.search("".join(outside)):
        raise JqlError(f"JQL may not contain ORDER BY (the pipeline orders results): {jql!r}")
    return f"({jql.strip()})"


def window_clause(window: IssueWindow, field: str = "updated") -> str:
    """Both bounds in epoch ms: Jira reads bare date strings in the searching user's time zone."""
    if field not in ("updated", "created"):
        raise JqlError(f"cannot bound JQL on field {field!r}")
    return f"{field} >= {window.start_ms} AND {field} < {window.end_ms}"


def build_issue_jql(
    window: IssueWindow | None = None,
    *,
    projects: Sequence[str] | None = None,
    user_jql: str | None = None,
    order_by: str = "key ASC",
) -> str:
    """The JQL of an issue sync: window AND projects AND (user JQL) ORDER BY a stable order."""
    clauses: list[str] = []
    if window is not None:
        clauses.append(window_clause(window))
    if projects:
        clauses.append(project_clause(projects))
    if user_jql is not None and user_jql.strip():
        clauses.append(fence_user_jql(user_jql))
    if not clauses:
        raise JqlError("refusing an unbounded issue search: give a window, projects or JQL")
    if not re.fullmatch(r"(updated|created|key|id) (ASC|DESC)", order_by):
        raise JqlError(f"unsupported ORDER BY: {order_by!r}")
    return " AND ".join(clauses) + f" ORDER BY {order_by}"


def keyset_jql(jql: str, after_id: int | None) -> str:
    """The JQL of one keyset page: `jql`'s issues above `after_id`, in id order.

    The trailing ORDER BY `build_issue_jql` writes gives way to `ORDER BY id ASC` (user JQL may
    hold none, see `fence_user_jql`), so a walk can continue from the last id it saw.
    """
    where = _OUR_ORDER_BY.sub("", jql.strip())
    if after_id is None:
        return f"{where} ORDER BY id ASC"
    return f"({where}) AND id > {int(after_id)} ORDER BY id ASC"
