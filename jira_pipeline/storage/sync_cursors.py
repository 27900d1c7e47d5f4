"""`jira_sync_cursors`: where a site's incremental feeds stand (the worklog feeds' `since`),
stored by the IO manager after the writes the position covers, in the same handle_output.

Why here and not in Dagster (a materialization's metadata or a sensor cursor): the position
describes what MongoDB holds, so it lives beside that data. Wiping or replacing the database
takes the cursor along (the next run starts over from `since=0` rather than skipping what the
new database never received), and a run that fails before its writes finished never stores it,
so the next run reads the same changes again (writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from jira_pipeline.storage.entities import document_id
from jira_pipeline.timeutil import utc_now

SYNC_CURSORS_COLLECTION = "jira_sync_cursors"


@dataclass(frozen=True)
class FeedCursor:
    """A feed's new position, the last item of a `WriteStream`: the IO manager stores it once
    every upsert and tombstone before it is written."""

    feed: str  # "worklogs"
    position: Mapping[str, Any] = field(default_factory=dict)


def read_cursor(db: Database, connection_id: str, feed: str) -> dict[str, Any]:
    """The stored position of `feed` for the connection ({} before its first complete run)."""
    found = db[SYNC_CURSORS_COLLECTION].find_one(
        {"_id": document_id(connection_id, "sync_cursor", feed)}, {"position": 1})
    position = (found or {}).get("position")
    return dict(position) if isinstance(position, Mapping) else {}


def write_cursor(db: Database, connection_id: str, cursor: FeedCursor) -> None:
    _id = document_id(connection_id, "sync_cursor", cursor.feed)
    db[SYNC_CURSORS_COLLECTION].replace_one(
        {"_id": _id},
        {"_id": _id, "connection_id": connection_id, "feed": cursor.feed,
         "position": dict(cursor.position), "updated_at": utc_now()},
        upsert=True,
    )
