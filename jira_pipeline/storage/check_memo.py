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

"Written since" reaches back a margin before the evaluation (WRITTEN_MARGIN), and a full sync
writes every issue within it: so the memo also keeps, for the issues it read that were written
within the margin, the `content_hash` it read (every write of an issue's content sets it; a write
in place that does not, a re-key, drops it). The next evaluation reads only the ids, stamps and
hashes of the issues written since, and reads again only those whose hash is not the memo's.

Why beside the data, as the feeds' cursors: the memo describes what MongoDB holds, so a store
wiped or replaced takes it along (the next evaluation reads everything), and another Dagster
instance reading the same store agrees with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
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
# Beyond this many issues to re-read, one pass over every issue costs no more than reading
# them by their ids.
MOST_WRITTEN = 5_000
# Issues a memo remembers as read within the margin (`Seen`): 12 bytes each in the memo, and
# about 200 bytes each while an evaluation collects them.
MOST_RECENT = 30_000
# Values per `$in` query: a command stays small on a server.
IN_CHUNK = 1000
# Ids a memo may hold (besides its MOST_RECENT digests): its document stays far below MongoDB's
# 16 MiB.
MOST_REMEMBERED = 100_000


@dataclass(frozen=True)
class CheckMemo:
    """Issues written at or after `written_since` are re-read, but for those the evaluation read
    that still hold the content it read (`read_recently`: a `recent_key` each); `values` is what
    the check remembers of the others (per name, sorted ids)."""

    written_since: datetime
    values: Mapping[str, list[str]]
    read_recently: frozenset[bytes] = frozenset()


# Read beside what a check reads, for `Seen`.
SEEN_FIELDS = {"_id": 1, "content_hash": 1, "synced_at": 1}
_RECENT_KEY_BYTES = 12


def recent_key(_id: Any, digest: str) -> bytes:
    """One issue as read (its `_id` and `content_hash`), in 12 bytes: a memo holds thousands,
    as one binary value (a list of pairs cost the embedded store ~0.3 s a write at 20,000)."""
    named = f"{type(_id).__name__}:{_id}\0{digest}".encode()
    return hashlib.blake2b(named, digest_size=_RECENT_KEY_BYTES).digest()


class Seen:
    """What a read saw of each issue written at or after `since` (the next memo's
    `written_since`): `_id` -> its `recent_key`, or None when it has no content_hash. Bounded:
    past MOST_RECENT such issues it keeps none (the memo then holds no `read_recently`, and the
    next evaluation re-reads what was written within the margin)."""

    def __init__(self, since: datetime) -> None:
        self.since = since
        self.entries: dict[Any, bytes | None] = {}
        self.overflowed = False

    def add(self, doc: Mapping[str, Any]) -> tuple[bytes | None, datetime | None]:
        """One issue read with `SEEN_FIELDS`: its `recent_key` (None without content_hash) and
        its synced_at."""
        stamp, digest = doc.get("synced_at"), doc.get("content_hash")
        written = parse_jira_datetime(stamp) if isinstance(stamp, datetime) else None
        key = recent_key(doc["_id"], digest) if isinstance(digest, str) else None
        # Outside the next memo's margin, its key is only wanted by `changed_since`.
        if written is not None and written >= self.since and not self.overflowed:
            if len(self.entries) >= MOST_RECENT:
                self.overflowed = True
                self.entries.clear()
            else:
                self.entries[doc["_id"]] = key
        return key, written

    def forget(self, ids: list[Any]) -> None:
        """Drop what was seen of `ids`: they are read again, and what that read sees of them
        (or, for one no longer live, nothing) is what the memo may remember."""
        for _id in ids:
            self.entries.pop(_id, None)


def memo_since(read_at: datetime) -> datetime:
    """The `written_since` of a memo of an evaluation that began reading at `read_at`."""
    # Floored to BSON's milliseconds, as `synced_at` is stored.
    return read_at.replace(microsecond=read_at.microsecond // 1000 * 1000) - WRITTEN_MARGIN


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
    recent = position.get("recent", b"")
    if not isinstance(recent, bytes) or len(recent) % _RECENT_KEY_BYTES:
        return None
    return CheckMemo(parse_jira_datetime(since), {name: [str(i) for i in ids]
                                                  for name, ids in values.items()},
                     frozenset(recent[start : start + _RECENT_KEY_BYTES]
                               for start in range(0, len(recent), _RECENT_KEY_BYTES)))


def write_memo(db: Database, connection_id: str, check: str, read_at: datetime,
               values: Mapping[str, Any], seen: Seen | None = None) -> None:
    """Remember `values` (per name, ids) as of an evaluation that began reading at `read_at`,
    and of `seen` (the issues it read, with what it read of them) those written within the
    margin; too many ids to hold, and the next evaluation reads every issue."""
    lists = {name: sorted(str(i) for i in ids) for name, ids in values.items()}
    since = memo_since(read_at)
    if seen is not None and seen.since != since:
        raise ValueError("what was seen is not of this memo's margin")
    # A document without content_hash (its copied names were rewritten) is re-read each time.
    recent = sorted(key for key in (seen.entries.values() if seen is not None else ())
                    if key is not None)
    position: dict[str, Any] = {}
    if sum(len(ids) for ids in lists.values()) <= MOST_REMEMBERED:
        position = {"written_since": since, "values": lists, "recent": b"".join(recent)}
    write_cursor(db, connection_id, FeedCursor(_feed(check), position))


def written_since_filter(connection_id: str, since: datetime) -> dict[str, Any]:
    """The live issues of the connection written at or after `since`."""
    return {"connection_id": connection_id, "is_deleted": {"$ne": True},
            "synced_at": {"$gte": since}}


def changed_since(db: Database, connection_id: str, memos: Sequence[CheckMemo],
                  seen: Seen) -> list[Any] | None:
    """The `_id`s of the live issues to re-read for `memos` (written at or after a memo's
    `written_since` and not as it read them), adding what it reads of each to `seen`; None when
    more than MOST_WRITTEN are to be re-read (one pass over every issue
    costs no more then, and the memo's lists need not grow with a full sync).

    Why beside the moment: a full sync's writes all fall within the margin of its checks'
    evaluation, so the next one re-read every issue although none had changed. Only the ids,
    hashes and stamps are read here, from the documents' top levels."""
    since = min(memo.written_since for memo in memos)
    changed: list[Any] = []
    for doc in db["jira_issues"].find(written_since_filter(connection_id, since), SEEN_FIELDS):
        key, stamp = seen.add(doc)
        if key is None or stamp is None or any(
                stamp >= memo.written_since and key not in memo.read_recently
                for memo in memos):
            changed.append(doc["_id"])
            if len(changed) > MOST_WRITTEN:
                return None
    return changed


def live_issues_by_id(db: Database, connection_id: str, ids: list[Any],
                      projection: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The live issues of `ids`, projected, a chunk of ids per query."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    for start in range(0, len(ids), IN_CHUNK):
        yield from db["jira_issues"].find(
            {**live, "_id": {"$in": ids[start : start + IN_CHUNK]}}, projection, batch_size=500)
