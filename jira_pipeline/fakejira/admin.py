"""FakeJiraAdmin: drive a running fake's /_fake/* endpoints over HTTP (data, clock, knobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from jira_pipeline.timeutil import parse_jira_datetime


class FakeJiraAdminError(RuntimeError):
    """The fake refused an admin request; the message is its errorMessages."""


class FakeJiraAdmin:
    def __init__(self, base_url: str, *, timeout: float = 30.0, verify: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FakeJiraAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self._http.request(method, f"/_fake{path}", json=body)
        if response.status_code >= 400:
            try:
                messages = response.json().get("errorMessages") or [response.text]
            except ValueError:
                messages = [response.text]
            raise FakeJiraAdminError(f"{method} /_fake{path}: {response.status_code} "
                                     f"{'; '.join(messages)}")
        return response.json() if response.content else None

    def create_issue(self, project_key: str, fields: dict | None = None) -> dict:
        """Create an issue now (fake clock); returns {id, key, updated}."""
        return self._call("POST", "/issues", {"project_key": project_key, "fields": fields or {}})

    def touch_issue(self, key: str, fields: dict | None = None) -> dict:
        """Edit an issue: bumps `updated` to the fake's now and appends a changelog history."""
        return self._call("POST", f"/issues/{key}/touch", {"fields": fields} if fields else {})

    def move_issue(self, key: str, project_key: str) -> dict:
        """Move an issue to another project: returns {id, key (the new one), updated}."""
        return self._call("POST", f"/issues/{key}/move", {"project_key": project_key})

    def change_status(self, status_id: str, *, name: str | None = None,
                      category: str | None = None) -> dict:
        """Rename and/or recategorise (TODO, IN_PROGRESS, DONE) a status; issues' `updated`
        stays. Returns {id, name, category}."""
        body = {k: v for k, v in (("name", name), ("category", category)) if v is not None}
        return self._call("POST", f"/statuses/{status_id}", body)

    def set_user_active(self, user_id: str, active: bool) -> dict:
        """Deactivate or reactivate a user (accountId, Data Center key or username)."""
        return self._call("POST", f"/users/{user_id}", {"active": active})

    def change_project(self, key: str, *, new_key: str | None = None,
                       name: str | None = None) -> dict:
        """Change a project's key (its issues are re-keyed) and/or name; returns {id, key,
        name}."""
        body = {k: v for k, v in (("key", new_key), ("name", name)) if v is not None}
        return self._call("POST", f"/projects/{key}", body)

    def set_raw_fields(
        self,
        key: str,
        fields: dict | None = None,
        remove: tuple[str, ...] = (),
        *,
        reset: bool = False,
    ) -> dict:
        """Serve these raw field values for an issue (any JSON, odd types included) and leave the
        `remove`d fields out; `updated` is not bumped. `reset` first drops the values set
        earlier (the issue is served as generated again). Returns {id, key, updated}."""
        body = {"fields": fields or {}, "remove": list(remove), "reset": reset}
        return self._call("POST", f"/issues/{key}/fields", body)

    def delete_issue(self, key: str) -> None:
        self._call("DELETE", f"/issues/{key}")

    def issues(self) -> list[dict]:
        return self._call("GET", "/issues")

    def worklogs(self, key: str) -> list[dict]:
        """An issue's worklogs now: [{id, issueId, issueKey, timeSpentSeconds, updated, ...}]."""
        return self._call("GET", f"/issues/{key}/worklogs")

    def add_worklog(self, key: str, seconds: int = 3600, **fields: Any) -> dict:
        """Log work on an issue now (fake clock; `started`, `comment`, `author` optional);
        bumps the issue's `updated` and `timetracking`. Returns the worklog's summary."""
        return self._call("POST", f"/issues/{key}/worklogs",
                          {"timeSpentSeconds": seconds, **fields})

    def edit_worklog(self, worklog_id: str, **fields: Any) -> dict:
        """Edit a worklog (timeSpentSeconds, started, comment) or move it (issue_key=...)."""
        return self._call("POST", f"/worklogs/{worklog_id}", fields)

    def delete_worklog(self, worklog_id: str) -> None:
        self._call("DELETE", f"/worklogs/{worklog_id}")

    def change_worklog_after_feed_page(self, worklog_id: str, action: str) -> dict:
        """One-shot: edit or delete (`action`) a worklog right after the next /worklog/updated
        page is served: a change during a client's walk, between the feed and /worklog/list."""
        return self._call("POST", "/worklog_feed/change_after_page",
                          {"worklog_id": worklog_id, "action": action})

    def fail_next_worklog_request(self, feed: str, status: int = 400) -> dict:
        """One-shot: the next `feed` request ("updated", "deleted" or "list") answers `status`."""
        return self._call("POST", "/worklog_feed/fail_next", {"feed": feed, "status": status})

    def advance_clock(self, seconds: float) -> datetime:
        return self._clock({"advance_seconds": seconds})

    def set_clock(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("set_clock needs a timezone-aware datetime")
        return self._clock({"now": now.isoformat()})

    def now(self) -> datetime:
        return self._clock(None)

    def _clock(self, body: dict | None) -> datetime:
        answer = self._call("POST" if body else "GET", "/clock", body)
        moment = parse_jira_datetime(answer["now"])
        if moment is None:
            raise FakeJiraAdminError(f"the fake answered a clock without a time: {answer!r}")
        return moment

    def configure(self, **knobs: Any) -> dict:
        """Change latency_ms, rate_limit, burst, fault_rate, token_ttl, malformed_json_next,
        forbidden_projects, search_lag_s (changes reach search that many seconds of the fake
        clock later), and how search pages behave: paging ("keyset" | "offset"),
        glitch_next_page ("no_token" | "short", one-shot), search_page_cap,
        approximate_count_skew, change_after_served ({"key", "action": "touch" | "delete"});
        returns every knob's value afterwards."""
        return self._call("POST", "/config", knobs)

    def reset(self) -> None:
        self._call("POST", "/reset")

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    # --- comments and the field catalog (fakejira/comments.py, fakejira/field_trash.py) ----

    def add_comment(self, key: str, body: str | dict, *, author: str | None = None) -> dict:
        """Comment on an issue now (fake clock), bumping its `updated`: the new Comment, with
        `issueKey` and `issueUpdated`."""
        return self._call("POST", f"/issues/{key}/comments", {"body": body, "author": author})

    def edit_comment(self, key: str, comment_id: str, body: str | dict) -> dict:
        """Edit a comment (its `updated` and the issue's move to now)."""
        return self._call("PUT", f"/issues/{key}/comments/{comment_id}", {"body": body})

    def delete_comment(self, key: str, comment_id: str) -> None:
        """Delete a comment (the issue's `updated` moves to now)."""
        self._call("DELETE", f"/issues/{key}/comments/{comment_id}")

    def shorten_comment_pages(self, pages: int = 1) -> dict:
        """The next `pages` pages of /issue/{id}/comment holding two or more comments come back
        short (their first half missing, startAt and total as if whole)."""
        return self._call("POST", "/comments/config", {"short_pages": pages})

    def trash_field(self, field_id: str) -> None:
        """Move a custom field to the trash: /field stops listing it."""
        self._call("DELETE", f"/fields/{field_id}")

    def restore_field(self, field_id: str) -> None:
        self._call("POST", f"/fields/{field_id}/restore")

    def remove_reference(self, kind: str, row_id: str) -> None:
        """Drop a reference row (kind: issuetype, priority, resolution, statuscategory) from its
        listing; issues keep carrying it."""
        self._call("DELETE", f"/reference/{kind}/{row_id}")

    def restore_reference(self, kind: str, row_id: str) -> None:
        self._call("POST", f"/reference/{kind}/{row_id}/restore")

    def remove_project_part(self, kind: str, row_id: str, status: int = 404) -> None:
        """Drop a version or component (kind: version, component) from its project's listings;
        issues keep carrying it. kind "project" (row_id a key or id): the project's version and
        component requests answer `status` (404: deleted) while /project still lists it."""
        self._call("DELETE", f"/project-parts/{kind}/{row_id}?status={status}")

    def restore_project_part(self, kind: str, row_id: str) -> None:
        self._call("POST", f"/project-parts/{kind}/{row_id}/restore")

    def archive_project(self, key: str) -> None:
        """Archive a project: /project/search lists it only with status=archived, Data
        Center's /project only with includeArchived=true; its issues and lists stay."""
        self._call("DELETE", f"/project-parts/archive/{key}")

    def unarchive_project(self, key: str) -> None:
        self._call("POST", f"/project-parts/archive/{key}/restore")

    def link_issues(self, link_type: str, outward: str, inward: str) -> str:
        """Link two issues now (`outward` blocks `inward` for type Blocks): both issues'
        `updated` moves and each gets a "Link" history. Returns the link id."""
        return self._call("POST", "/links", {"type": link_type, "outward": outward,
                                             "inward": inward})["id"]

    def unlink_issues(self, link_id: str) -> None:
        """Remove a link now: both issues' `updated` moves and each gets a "Link" history."""
        self._call("DELETE", f"/links/{link_id}")

    def configure_changelog(self, **knobs: Any) -> dict:
        """How `POST /changelog/bulkfetch` pages misbehave: glitch_next_page ("no_token" |
        "short" | "repeat_token", one-shot) and page_cap (histories a page at most; 0: as
        asked). Returns both (fakejira/history.py)."""
        return self._call("POST", "/changelog", knobs)

    def move_to_sprint(self, sprint_id: int, *, add: list[str] | None = None,
                       remove: list[str] | None = None) -> list[dict]:
        """Move issues into a sprint (out of their other open sprint) or out of it, now: their
        sprint field, changelog and `updated` change (fakejira/agile.py)."""
        body = {"add": add or [], "remove": remove or []}
        return self._call("POST", f"/agile/sprints/{sprint_id}/issues", body)["moved"]

    def remove_board(self, board_id: int) -> None:
        """Drop a board from /rest/agile/1.0/board (its sprints stay readable by id)."""
        self._call("DELETE", f"/agile/boards/{board_id}")

    def restore_board(self, board_id: int) -> None:
        self._call("POST", f"/agile/boards/{board_id}/restore")

    def fail_board_sprints(self, board_id: int, status: int | None,
                           message: str = "Bad request") -> None:
        """Make a board's sprint list answer `status` with `message` (None: answer again)."""
        self._call("POST", f"/agile/boards/{board_id}/fail",
                   {"status": status, "message": message})

    def omit_agile_is_last(self, omit: bool = True) -> None:
        """Leave `isLast` out of board and sprint pages (fakejira/agile.py)."""
        self._call("POST", "/agile/config", {"omit_is_last": omit})
