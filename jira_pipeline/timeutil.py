"""Jira timestamps: parse Jira's `2025-01-15T09:30:12.345+0100` form to aware UTC and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import overload


class TimestampError(ValueError):
    """A value that should be a Jira timestamp is not one."""


@overload
def parse_jira_datetime(value: None) -> None: ...
@overload
def parse_jira_datetime(value: str | datetime) -> datetime: ...
@overload
def parse_jira_datetime(value: str | datetime | None) -> datetime | None: ...
def parse_jira_datetime(value: str | datetime | None) -> datetime | None:
    """Return `value` as a timezone-aware UTC datetime (None stays None).

    Jira's forms (`2025-01-15T09:30:12.345+0100`, `+01:00`, `Z`, no fraction, a bare date) are
    all ISO 8601, which `datetime.fromisoformat` reads since Python 3.11. Naive datetimes and
    strings without an offset are taken as UTC: that is what MongoDB returns for its dates and
    what Jira means when it omits the offset in admin payloads; a bare date is midnight UTC.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TimestampError(f"not a Jira timestamp: {value!r}") from None
    else:
        raise TimestampError(f"not a Jira timestamp: {value!r} ({type(value).__name__})")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


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
