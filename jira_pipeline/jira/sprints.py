"""Jira Software's boards and sprints: their records, and the ids an issue's sprint field holds
(Cloud's objects or Data Center's `Sprint@...[id=..]` strings)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Self

from jira_pipeline.jira._exceptions import JiraError
from jira_pipeline.jira.comments import _moment
from jira_pipeline.jira.models import JiraRecord, RecordRejected, _required_id
from jira_pipeline.jira.reference import _id_text, _text

# The schema `custom` of Jira Software's sprint field, whatever its customfield id.
SPRINT_FIELD_CUSTOM = "com.pyxis.greenhopper.jira:gh-sprint"
# What Jira answers a sprint list of a board without sprints (kanban, some simple boards).
NO_SPRINTS_MESSAGE = "does not support sprints"
_DC_ID = re.compile(r"\[(?:.*?,)?id=(\d+)[,\]]")


class SprintsNotSupported(JiraError):
    """A board's sprint list answered 400 "The board does not support sprints"."""

    def __init__(self, board_id: str) -> None:
        super().__init__(f"board {board_id} does not support sprints")
        self.board_id = board_id


def sprint_ids(value: Any) -> list[str]:
    """The sprint ids of a sprint field's value, in the order Jira lists them.

    Cloud (v2 and v3) sends a list of objects with an `id`; Data Center a list of strings
    `com.atlassian.greenhopper.service.sprint.Sprint@1f2e[id=12,rapidViewId=3,...]`; an
    issue in no sprint has null. Entries neither shape allows are skipped.
    """
    if not isinstance(value, list):
        return []
    found: list[str] = []
    for entry in value:
        sprint_id: Any = None
        if isinstance(entry, dict):
            sprint_id = entry.get("id")
        elif isinstance(entry, str):
            match = _DC_ID.search(entry)
            sprint_id = match[1] if match else None
        elif isinstance(entry, int) and not isinstance(entry, bool):
            sprint_id = entry
        if isinstance(sprint_id, bool) or sprint_id in (None, ""):
            continue
        if isinstance(sprint_id, int | str) and str(sprint_id) not in found:
            found.append(str(sprint_id))
    return found


DC_SPRINT_PREFIX = "com.atlassian.greenhopper.service.sprint.Sprint@"
_DC_NAME = re.compile(r"[\[,]name=(.*?),(?:startDate|endDate|completeDate|activatedDate|"
                      r"sequence|goal|rapidViewId|state)=")


def data_center_sprint(value: str) -> tuple[str, str | None] | None:
    """(id, name) of one of Data Center's `Sprint@...[id=..,name=..,...]` strings (a name may
    hold commas: it runs to the next known key); None for any other text."""
    if not value.startswith(DC_SPRINT_PREFIX):
        return None
    found = _DC_ID.search(value)
    if found is None:
        return None
    name = _DC_NAME.search(value)
    return found[1], name[1] if name else None


class BoardRecord(JiraRecord):
    board_id: str
    name: str | None
    type: str | None  # scrum | kanban | simple
    project_id: str | None  # the board's location project (a user's board has none)
    project_key: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, board_id = _required_id(raw, connection_id, "board")
        location = raw.get("location")
        if not isinstance(location, dict):
            location = {}
        return cls(
            connection_id=connection_id,
            raw=raw,
            board_id=board_id,
            name=_text(raw.get("name")),
            type=_text(raw.get("type")),
            project_id=_id_text(location.get("projectId")),
            project_key=_text(location.get("projectKey")),
        )


class SprintRecord(JiraRecord):
    sprint_id: str
    name: str | None
    state: str | None  # future | active | closed
    board_ids: list[str]  # every board whose sprint list showed it (sorted by number)
    origin_board_id: str | None
    goal: str | None
    start_date: datetime | None
    end_date: datetime | None
    complete_date: datetime | None
    activated_date: datetime | None
    created_date: datetime | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        """`raw` is `{"sprint": <Jira's sprint JSON>, "board_ids": [...]}` (what the sprints
        walk yields, each sprint once); the stored `raw` is Jira's sprint JSON."""
        if not isinstance(raw, dict) or "sprint" not in raw:
            raise RecordRejected("a sprint came without its envelope", raw=raw,
                                 connection_id=connection_id, jira_id=None, key=None)
        sprint, sprint_id = _required_id(raw["sprint"], connection_id, "sprint")
        boards = {str(b) for b in raw.get("board_ids") or () if _id_text(b) is not None}
        return cls(
            connection_id=connection_id,
            raw=sprint,
            sprint_id=sprint_id,
            name=_text(sprint.get("name")),
            state=_text(sprint.get("state")),
            board_ids=sorted(boards, key=lambda b: (len(b), b)),
            origin_board_id=_id_text(sprint.get("originBoardId")),
            goal=_text(sprint.get("goal")),
            start_date=_moment(sprint.get("startDate")),
            end_date=_moment(sprint.get("endDate")),
            complete_date=_moment(sprint.get("completeDate")),
            activated_date=_moment(sprint.get("activatedDate")),
            created_date=_moment(sprint.get("createdDate")),
        )
