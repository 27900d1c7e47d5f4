"""What a whole-store issue check remembers of its last evaluation, so the next one reads only
the issues written since: in `jira_sync_cursors`, feed `check:<check name>`.

A check such as `no_duplicate_keys` or `references_present` judges every live issue. Reading
them all is a pass over the collection each run (about 1 to 2 s per 20,000 issues in the
embedded store): at N=20,000 those passes were most of a sensor-triggered delta. Yet an issue
can only break such a check when it is written (every write of an issue stamps `synced_at`,
indexed), or when what it is judged against changes; so a check keeps, beside the moment it
read the store, what it needs to judge the issues it does not re-read (the ids they reference,
the keys it found duplicated), and reads the issues written since. Each check says what makes
the memo unusable, in which case it reads every issue again and starts a new memo.

Why beside the data, as the feeds' cursors: the memo describes what MongoDB holds, so a store
wiped or replaced takes it along (the next evaluation reads everything), and another Dagster
instance reading the same store agrees with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from jira_pipeline.storage.sync_cursors import FeedCursor, read_cursor, write_cursor
from jira_pipeline.timeutil import parse_jira_datetime

# Issues are re-read from this long before the last evaluation began: a write stamps
# `synced_at` with its writer's clock (another machine's, perhaps) before its batch commits, so
# this covers a batch's stamp-to-commit time (seconds) and clocks apart by up to a minute
# (NTP keeps them within milliseconds). Runs that write one site's issues never overlap (its
# pool), so in practice only a check evaluated alone, during a sync, meets such a write.
WRITTEN_MARGIN = timedelta(minutes=1)
# Beyond this many issues written since, one pass over every issue costs no more than reading
# them by the index, and the memo's lists need not grow with a full sync.
MOST_WRITTEN = 5_000
# Ids a memo may hold: its document stays far below MongoDB's 16 MiB.
MOST_REMEMBERED = 100_000


@dataclass(frozen=True)
class CheckMemo:
    """Issues written at or after `written_since` are re-read; `values` is what the check
    remembers of the others (per name, sorted ids)."""

    written_since: datetime
    values: Mapping[str, list[str]]


def _feed(check: str) -> str:
    return f"check:{check}"


def read_memo(db: Database, connection_id: str, check: str) -> CheckMemo | None:
    """The check's memo, or None: never evaluated on this store, or a memo not usable."""
    position = read_cursor(db, connection_id, _feed(check))
    since = position.get("written_since")
    values = position.get("values")
    if not isinstance(since, datetime) or not isinstance(values, Mapping):
        return None
    if not all(isinstance(ids, list) for ids in values.values()):
        return None
    return CheckMemo(parse_jira_datetime(since), {name: [str(i) for i in ids]
                                                  for name, ids in values.items()})


def write_memo(db: Database, connection_id: str, check: str, read_at: datetime,
               values: Mapping[str, Any]) -> None:
    """Remember `values` (per name, ids) as of an evaluation that began reading at `read_at`;
    too many ids to hold, and the next evaluation reads every issue."""
    lists = {name: sorted(str(i) for i in ids) for name, ids in values.items()}
    position: dict[str, Any] = {}
    if sum(len(ids) for ids in lists.values()) <= MOST_REMEMBERED:
        # Floored to BSON's milliseconds, as `synced_at` is stored.
        since = read_at.replace(microsecond=read_at.microsecond // 1000 * 1000) - WRITTEN_MARGIN
        position = {"written_since": since, "values": lists}
    write_cursor(db, connection_id, FeedCursor(_feed(check), position))


def written_since_filter(connection_id: str, since: datetime) -> dict[str, Any]:
    """The live issues of the connection written at or after `since`."""
    return {"connection_id": connection_id, "is_deleted": {"$ne": True},
            "synced_at": {"$gte": since}}


def few_written(db: Database, connection_id: str, since: datetime) -> bool:
    """Whether few enough issues were written since `since` to read them alone."""
    # Their ids, not `count_documents`: the embedded store's count matches whole documents
    # (0.61 s for 5,001 of 20,000 issues, more than a projected pass over all of them), a
    # projected find reads the ids alone (0.18 s).
    ids = db["jira_issues"].find(written_since_filter(connection_id, since), {"_id": 1})
    return sum(1 for _ in ids.limit(MOST_WRITTEN + 1)) <= MOST_WRITTEN
