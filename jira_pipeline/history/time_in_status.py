"""`jira_time_in_status_daily`: per UTC day, project and status, the issues in that status at
some time of the day and the minutes spent in it by the issues that left it that day (mean,
p50, p90), counted from status transitions streamed once.

Memory holds one packed integer per interval (issue, status and the first and last day it
touches: ~44 bytes, against ~150 for a tuple holding the id's string), never the interval
documents or a row per interval and day: at N=100,000 every issue's current status is an open
interval that touches every day since it was entered, and a frame of one row per interval and
day held 700,000 rows a week of days."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from jira_pipeline.history.fields import number_value
from jira_pipeline.timeutil import parse_jira_datetime

# What the daily table reads of a transition: nothing else.
TRANSITION_FIELDS = ("issue_id", "project_key", "status_id", "status_name", "entered_at",
                     "left_at", "minutes_in_status")
ROW_FIELDS = ("day", "project_key", "status_id", "status_name", "issues_in_status",
              "transitions", "mean_minutes", "p50_minutes", "p90_minutes")
NO_PROJECT = "(none)"
DAY = timedelta(days=1)
# A project key and status id ("" for none): what a row is counted under besides its day.
StatusKey = tuple[str, str]
# Bits of a packed span holding its key index: more keys than projects times statuses.
KEY_BITS = 32


def _midnight(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _moment(value: Any) -> datetime | None:
    """A stored datetime as aware UTC (a client without tz_aware returns naive UTC); anything
    else is no moment."""
    return parse_jira_datetime(value) if isinstance(value, datetime) else None


def quantile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted values, interpolated linearly between the two nearest ranks
    (pandas' and numpy's default)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


class DailyTimeInStatus:
    """The rows of the UTC days in [start, end) (midnights), from the transitions overlapping
    them, added one at a time: `issues_in_status` counts the distinct issues in the status at
    some moment of the day (an open interval runs until `now`), `transitions` the intervals
    that ended that day with a `minutes_in_status`, whose minutes give the mean, p50 and p90
    (None on a day nobody left the status). Intervals outside the days are ignored."""

    def __init__(self, start: datetime, end: datetime, now: datetime) -> None:
        self.start, self.now = start, now
        self.hi = min(end, now + DAY)
        # The last day an interval may touch: the day holding the instant before `hi`.
        self.last_day = _midnight(self.hi - DAY)
        self.keys: dict[StatusKey, int] = {}
        self.names: dict[int, str] = {}
        # Bits of a packed span holding a day index.
        self.day_bits = max(1, self._day(self.last_day).bit_length())
        # Issue ids that are not a canonical decimal number (Jira's are), numbered.
        self.other_issues: dict[str, int] = {}
        # One int per interval present: issue, key index, first and last day index, in bit
        # fields from high to low, so sorting the ints sorts by issue, key and first day.
        self.spans: list[int] = []
        self.left: dict[tuple[int, int], list[float]] = defaultdict(list)
        self.read = 0

    def _key(self, interval: Mapping[str, Any]) -> int:
        project, status = interval.get("project_key"), interval.get("status_id")
        key = (NO_PROJECT if project is None else project, "" if status is None else status)
        index = self.keys.setdefault(key, len(self.keys))
        if interval.get("status_name") is not None:
            self.names[index] = interval["status_name"]
        return index

    def _day(self, moment: datetime) -> int:
        return (max(_midnight(moment), self.start) - self.start) // DAY

    def _issue(self, issue_id: Any) -> int:
        """A distinct non-negative number per issue id: a decimal id's value, doubled, or an
        odd number for any other id ("007" is not "7")."""
        text = str(issue_id)
        if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
            return int(text) << 1
        return self.other_issues.setdefault(text, len(self.other_issues)) << 1 | 1

    def _span(self, issue: int, key: int, first: int, last: int) -> int:
        return (((issue << KEY_BITS | key) << self.day_bits | first) << self.day_bits) | last

    def add(self, interval: Mapping[str, Any]) -> None:
        self.read += 1
        entered, left = _moment(interval.get("entered_at")), _moment(interval.get("left_at"))
        ends = left if left is not None else self.now
        key: int | None = None
        if entered is not None and entered < self.hi and self.start < ends and entered < ends:
            # Its last day holds its last instant: an end at midnight does not reach that day.
            last = min(_midnight(ends - timedelta(microseconds=1)), self.last_day)
            if last >= max(_midnight(entered), self.start):
                key = self._key(interval)
                self.spans.append(self._span(self._issue(interval.get("issue_id")), key,
                                             self._day(entered), self._day(last)))
        if left is not None and self.start <= left < self.hi:
            key = self._key(interval) if key is None else key
            minutes = self.left[(self._day(left), key)]
            value = number_value(interval.get("minutes_in_status"))
            if value is not None:
                minutes.append(value)

    def present(self) -> dict[tuple[int, int], int]:
        """Per day index and key index: the distinct issues in the status that day. An issue's
        spans in one status are merged where they share a day, so each counts once a day."""
        self.spans.sort()
        changes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))

        def count(issue_key: int, first: int, last: int) -> None:
            changes[issue_key][first] += 1
            changes[issue_key][last + 1] -= 1

        day_mask, key_mask = (1 << self.day_bits) - 1, (1 << KEY_BITS) - 1
        # The merged run of one issue and key: (issue and key packed, key, first, last day).
        run: tuple[int, int, int, int] | None = None
        for span in self.spans:
            last, first = span & day_mask, span >> self.day_bits & day_mask
            issue_key = span >> 2 * self.day_bits
            if run is not None and issue_key == run[0] and first <= run[3] + 1:
                run = (*run[:3], max(run[3], last))
                continue
            if run is not None:
                count(*run[1:])
            run = (issue_key, issue_key & key_mask, first, last)
        if run is not None:
            count(*run[1:])
        counts: dict[tuple[int, int], int] = {}
        for key, steps in changes.items():
            running, days = 0, sorted(steps)
            for day, following in pairwise(days):
                running += steps[day]
                if running > 0:
                    for covered in range(day, following):
                        counts[(covered, key)] = running
        return counts

    def rows(self) -> list[dict[str, Any]]:
        present = self.present()
        by_index = {index: key for key, index in self.keys.items()}
        rows = []
        for day, key in sorted({*present, *self.left},
                               key=lambda pair: (pair[0], by_index[pair[1]])):
            project, status = by_index[key]
            minutes = sorted(self.left.get((day, key), ()))
            rows.append({
                "day": self.start + day * DAY, "project_key": project,
                "status_id": status or None, "status_name": self.names.get(key),
                "issues_in_status": present.get((day, key), 0), "transitions": len(minutes),
                "mean_minutes": sum(minutes) / len(minutes) if minutes else None,
                "p50_minutes": quantile(minutes, 0.5) if minutes else None,
                "p90_minutes": quantile(minutes, 0.9) if minutes else None,
            })  # fmt: skip
        return rows


def time_in_status_rows(
    transitions: Iterable[Mapping[str, Any]], start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """The rows of the UTC days in [start, end), sorted by day, project and status id (see
    `DailyTimeInStatus`)."""
    days = DailyTimeInStatus(start, end, now)
    for transition in transitions:
        days.add(transition)
    return days.rows()
