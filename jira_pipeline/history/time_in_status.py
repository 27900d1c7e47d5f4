"""`jira_time_in_status_daily`: per UTC day, project and status, the issues in that status at
some time of the day and the minutes spent in it by the issues that left it that day (mean,
p50, p90), computed with pandas from status transitions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jira_pipeline.timeutil import parse_jira_datetime

if TYPE_CHECKING:  # pandas is imported where a frame is built (it costs a run ~45 MB RSS)
    import pandas as pd

# What the daily table reads of a transition: nothing else.
TRANSITION_FIELDS = ("issue_id", "project_key", "status_id", "status_name", "entered_at",
                     "left_at", "minutes_in_status")
ROW_FIELDS = ("day", "project_key", "status_id", "status_name", "issues_in_status",
              "transitions", "mean_minutes", "p50_minutes", "p90_minutes")
NO_PROJECT = "(none)"
DAY = timedelta(days=1)
# A row's key: its UTC day, project key and status id ("" for none, as the frame holds it).
RowKey = tuple[datetime, str, str]


def _midnight(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


class OpenIntervals:
    """Intervals without an end (each issue's current status) counted per project, status and
    first UTC day, the days before `since` folded into it. An open interval covers every day
    from its first to the one holding `now`, so a day's count of them is a sum over these
    counters: the step never holds one row per issue (at N=100,000 every issue has one, and
    each overlaps every chunk of days)."""

    def __init__(self, since: datetime, now: datetime) -> None:
        self.since, self.now = since, now
        self.counts: Counter[tuple[str, str, datetime]] = Counter()
        self.names: dict[tuple[str, str], str] = {}

    def add(self, interval: Mapping[str, Any], sign: int = 1) -> None:
        entered = interval.get("entered_at")
        if not isinstance(entered, datetime):
            return
        entered = parse_jira_datetime(entered)  # aware UTC, whatever the client returned
        if entered >= self.now:  # it covers no instant before now
            return
        project, status = interval.get("project_key"), interval.get("status_id")
        key = (NO_PROJECT if project is None else project, "" if status is None else status)
        self.counts[(*key, max(_midnight(entered), self.since))] += sign
        if interval.get("status_name") is not None:
            self.names[key] = interval["status_name"]

    def subtract(self, intervals: Iterable[Mapping[str, Any]]) -> OpenIntervals:
        """These counts less the given open intervals (counted the same way), in a copy."""
        rest = OpenIntervals(self.since, self.now)
        rest.counts, rest.names = Counter(self.counts), self.names
        for interval in intervals:
            rest.add(interval, sign=-1)
        return rest

    def present(self, start: datetime, end: datetime) -> dict[RowKey, int]:
        """Per UTC day of [start, end) before `now`, project and status: the open intervals
        in it at some moment of the day (those entered by the day's end)."""
        if start < self.since:
            raise ValueError(f"days from {start} asked of counts folded from {self.since}")
        days = []
        day = start
        while day < end and day < self.now:
            days.append(day)
            day += DAY
        present: Counter[RowKey] = Counter()
        for (project, status, first), count in self.counts.items():
            if count:
                for day in days:
                    if first <= day:
                        present[(day, project, status)] += count
        return {key: count for key, count in present.items() if count > 0}


def with_open_intervals(rows: list[dict[str, Any]], present: Mapping[RowKey, int],
                        names: Mapping[tuple[str, str], str]) -> list[dict[str, Any]]:
    """`rows` (of other issues' intervals) with `present`'s issues added to `issues_in_status`,
    and a row for each day, project and status only those issues were in, sorted by key."""
    by_key = {(row["day"], row["project_key"], row["status_id"] or ""): row for row in rows}
    for (day, project, status), count in present.items():
        row = by_key.get((day, project, status))
        if row is None:
            by_key[(day, project, status)] = {
                "day": day, "project_key": project, "status_id": status or None,
                "status_name": names.get((project, status)), "issues_in_status": count,
                "transitions": 0, "mean_minutes": None, "p50_minutes": None,
                "p90_minutes": None,
            }  # fmt: skip
        else:
            row["issues_in_status"] += count
            if row["status_name"] is None:
                row["status_name"] = names.get((project, status))
    return [by_key[key] for key in sorted(by_key)]


def transitions_frame(transitions: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(
        ({name: doc.get(name) for name in TRANSITION_FIELDS} for doc in transitions),
        columns=list(TRANSITION_FIELDS),
    )
    for column in ("entered_at", "left_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.as_unit("ns")
    frame["minutes_in_status"] = pd.to_numeric(frame["minutes_in_status"], errors="coerce")
    frame["project_key"] = frame["project_key"].fillna(NO_PROJECT)
    frame["status_id"] = frame["status_id"].fillna("")
    return frame


def _optional(value: Any) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else float(value)


def time_in_status_rows(
    frame: pd.DataFrame, start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """The rows of the UTC days in [start, end) (midnights), from the transitions overlapping
    them: `issues_in_status` counts the distinct issues in the status at some moment of the day
    (an open interval runs until `now`), `transitions` the intervals that ended that day, whose
    `minutes_in_status` give the mean, p50 and p90 (None on a day nobody left the status)."""
    import numpy as np
    import pandas as pd

    if frame.empty:
        return []
    lo, hi = pd.Timestamp(start), pd.Timestamp(min(end, now + DAY))
    ends = frame["left_at"].fillna(pd.Timestamp(now))
    live = frame[(frame["entered_at"] < hi) & (ends > lo) & (ends > frame["entered_at"])]
    ends = ends[live.index]
    first = live["entered_at"].dt.floor("D").clip(lower=lo)
    # The last day an interval touches: the day holding its last instant (an end at midnight
    # does not reach into that day).
    last_day = pd.Timestamp(hi - pd.Timedelta(DAY))
    last = (ends - pd.Timedelta(microseconds=1)).dt.floor("D")
    last = last.where(last < last_day, last_day)
    spans = ((last - first) // pd.Timedelta(DAY)).astype("int64") + 1
    spans = spans.clip(lower=0)
    counts = spans.to_numpy()
    repeated = live.loc[live.index.repeat(counts)].reset_index(drop=True)
    # Each repeated row's day: its first day plus its position within its own run of repeats.
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    days = first.loc[first.index.repeat(counts)].reset_index(drop=True) + pd.to_timedelta(
        offsets, unit="D")
    keys = ["day", "project_key", "status_id"]
    present = (
        repeated.assign(day=days)
        .groupby(keys, sort=True)
        .agg(issues_in_status=("issue_id", "nunique"), status_name=("status_name", "last"))
    )
    left = frame[frame["left_at"].notna() & (frame["left_at"] >= lo) & (frame["left_at"] < hi)]
    minutes = left.assign(day=left["left_at"].dt.floor("D")).groupby(keys, sort=True)[
        "minutes_in_status"]
    moved = minutes.agg(transitions="count", mean_minutes="mean", p50_minutes="median")
    moved["p90_minutes"] = minutes.quantile(0.9)  # one vectorised pass, not a call per group
    table = present.join(moved, how="outer").reset_index()
    rows = []
    for record in table.to_dict("records"):
        rows.append({
            "day": record["day"].to_pydatetime(),
            "project_key": record["project_key"],
            "status_id": record["status_id"] or None,
            "status_name": None if pd.isna(record["status_name"]) else record["status_name"],
            "issues_in_status": 0 if pd.isna(record["issues_in_status"])
            else int(record["issues_in_status"]),
            "transitions": 0 if pd.isna(record["transitions"]) else int(record["transitions"]),
            "mean_minutes": _optional(record["mean_minutes"]),
            "p50_minutes": _optional(record["p50_minutes"]),
            "p90_minutes": _optional(record["p90_minutes"]),
        })  # fmt: skip
    return rows
