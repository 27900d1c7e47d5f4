"""`jira_boards` and `jira_sprints`: Jira Software's boards and their sprints, full-refresh
dimensions; each sprint is stored once, with every board that shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from jira_pipeline.assets.dimensions import Dimension, StepListings
from jira_pipeline.jira import JiraClient, merge_pages
from jira_pipeline.jira.sprints import BoardRecord, SprintRecord, SprintsNotSupported
from jira_pipeline.settings import PipelineSettings

# Boards of these types have no sprints: their sprint list is never asked for.
NO_SPRINT_BOARD_TYPES = frozenset({"kanban"})
# The board listing's name in a step's StepListings: the sprints walk starts from the listing
# the boards walk read in the same run.
BOARD_LISTING = "boards"
_SPRINTS_A_PAGE = 50  # sprints a board's walk hands over at once (Jira's own page of them)


def _boards(client: JiraClient, settings: PipelineSettings) -> AsyncIterator[dict[str, Any]]:
    return client.boards()


async def _sprints(
    client: JiraClient, settings: PipelineSettings, counts: dict[str, int],
    listings: StepListings,
) -> AsyncIterator[dict[str, Any]]:
    """Each sprint once, after every board was asked, with the boards that showed it: a sprint
    shown by two boards (one's filter spans the other's project) comes from both lists. The
    boards are those the boards walk of this run listed whole, else listed here; their sprint
    lists are asked concurrently, as many at once as the client keeps requests in flight, so
    the walk takes about boards x latency / in-flight rather than boards x latency."""
    counts.update(boards_asked=0, kanban_boards_not_asked=0, boards_without_sprints=0)
    board_ids: list[str] = []
    async for board in listings.rows(BOARD_LISTING, client.boards):
        if board.get("type") in NO_SPRINT_BOARD_TYPES:
            counts["kanban_boards_not_asked"] += 1
        else:
            board_ids.append(str(board.get("id")))
    counts["boards_asked"] = len(board_ids)

    async def one_board(board_id: str) -> AsyncIterator[list[tuple[str, Any]]]:
        page: list[tuple[str, Any]] = []
        try:
            async for sprint in client.board_sprints(board_id):
                page.append((board_id, sprint))
                if len(page) >= _SPRINTS_A_PAGE:
                    yield page
                    page = []
        except SprintsNotSupported:
            counts["boards_without_sprints"] += 1  # a simple board without sprints
        if page:
            yield page

    shown: dict[str, tuple[dict[str, Any], set[str]]] = {}
    width = client.limiter.max_in_flight
    async with aclosing(merge_pages((one_board(b) for b in board_ids), max_running=width,
                                    max_buffered=width)) as pages:
        async for page in pages:
            for board_id, sprint in page:
                sprint_id = sprint.get("id") if isinstance(sprint, dict) else None
                if sprint_id is None:
                    yield {"sprint": sprint, "board_ids": [board_id]}  # dead-lettered
                    continue
                shown.setdefault(str(sprint_id), (sprint, set()))[1].add(board_id)
    for sprint_id in sorted(shown, key=lambda s: (len(s), s)):
        sprint, boards = shown[sprint_id]
        yield {"sprint": sprint, "board_ids": sorted(boards)}


@dataclass
class ReferencedSprints:
    ids: set[str]

    def plan(self, missing: list[str]) -> tuple[list[str], set[str]]:
        return missing, set()  # a sprint is one request; issues reference few unlisted ones


class UnlistedSprints:
    """A sprint issues reference that no board lists (its board was deleted, or the account
    cannot see the board) is fetched by id, so it is stored and not marked deleted."""

    group = "sprints"

    def referenced(self, db: Database, connection_id: str, ids: set[str]) -> ReferencedSprints:
        return ReferencedSprints(ids)

    async def fetch(self, client: JiraClient, ids: list[str]) -> AsyncIterator[dict[str, Any]]:
        for sprint_id in ids:
            sprint = await client.sprint(sprint_id)
            if sprint is not None:
                yield {"sprint": sprint, "board_ids": []}


BOARDS = Dimension(
    asset_name="jira_boards",
    entity="boards",
    description="Jira Software boards (scrum, kanban, simple) with their location project "
    "(full refresh; vanished ones marked deleted).",
    record_type=BoardRecord,
    walk=_boards,
    prefetch=True,
    shared_as=BOARD_LISTING,
    preview_fields=("board_id", "name", "type", "project_key"),
)
SPRINTS = Dimension(
    asset_name="jira_sprints",
    entity="sprints",
    description="Jira Software sprints of every board that has them, one document per sprint "
    "with board_ids (full refresh; sprints issues reference that no board lists are fetched "
    "one by one).",
    record_type=SprintRecord,
    counted_walk=_sprints,
    preview_fields=("sprint_id", "name", "state", "board_ids", "start_date"),
    completion=UnlistedSprints(),
)
AGILE_DIMENSIONS = (BOARDS, SPRINTS)
