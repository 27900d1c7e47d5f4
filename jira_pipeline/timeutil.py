"""Jira timestamps: parse Jira's `2025-01-15T09:30:12.345+0100` form to aware UTC and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# Jira writes offsets without a colon (+0100); Python < 3.11 could not parse that, and even now
# `fromisoformat` rejects some variants Jira emits (no fraction, `Z`). One regex covers them all.
_JIRA_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)


class TimestampError(ValueError):
    """A value that should be a Jira timestamp is not one."""


def parse_jira_datetime(value: str | datetime | None) -> datetime | None:
    """Return `value` as a timezone-aware UTC datetime (None stays None).

    Naive datetimes and strings without an offset are taken as UTC: that is what MongoDB
    returns for its dates and what Jira means when it omits the offset in admin payloads.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    match = _JIRA_DATETIME.match(value.strip())
    if match is None:
        # Date-only values (custom date fields, `duedate`) are midnight UTC.
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise TimestampError(f"not a Jira timestamp: {value!r}") from None
    fraction = (match["f"] or "0").ljust(6, "0")
    naive = datetime.strptime(
        f"{match['date']} {match['h']}:{match['m']}:{match['s'] or '00'}.{fraction}",
        "%Y-%m-%d %H:%M:%S.%f",
    )
    tz = match["tz"]
    if tz is None or tz == "Z":
        return naive.replace(tzinfo=UTC)
    digits = tz.replace(":", "")
    offset = timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
    return naive.replace(tzinfo=timezone(-offset if digits[0] == "-" else offset)).astimezone(UTC)


def format_jira_datetime(value: datetime, offset_minutes: int = 0) -> str:
    """Write `value` as Jira does, in the given UTC offset: `2025-01-15T09:30:12.345+0100`."""
    local = value.astimezone(timezone(timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    millis = local.microsecond // 1000
    return f"{local:%Y-%m-%dT%H:%M:%S}.{millis:03d}{sign}{hours:02d}{minutes:02d}"


def to_epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch: the only unambiguous way to bound a JQL date."""
    if value.tzinfo is None:
        raise TimestampError("refusing a naive datetime: its time zone is unknown")
    return int(value.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def utc_now() -> datetime:
    return datetime.now(tz=UTC)
