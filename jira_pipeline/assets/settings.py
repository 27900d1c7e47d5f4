"""What to sync and when: the pipeline's own environment variables, errors naming the variable."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from jira_pipeline.assets.partitions import DEFAULT_SYNC_START_DATE
from jira_pipeline.jira import JiraConfigError
from jira_pipeline.jira.jql import quote_project_key
from jira_pipeline.settings import env

Reader = Callable[[str], str | None]

_CRON = re.compile(r"^\S+(\s+\S+){4}$")


@dataclass(frozen=True)
class PipelineSettings:
    """Sync scope and cadence, read once when the definitions load."""

    sync_start_date: date = DEFAULT_SYNC_START_DATE
    projects: tuple[str, ...] = ()
    lookback: timedelta = timedelta(minutes=10)
    schedule_cron: str = "0 2 * * *"
    sensor_interval_s: int = 300
    freshness_tolerance: timedelta = timedelta(hours=2)
    consistency_lag: timedelta = timedelta(minutes=15)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        def read(name: str) -> str | None:
            if environ is None:
                return env(name)
            value = environ.get(name)
            return value.strip() if value and value.strip() else None

        return cls(
            sync_start_date=_date(read, "JIRA_SYNC_START_DATE", DEFAULT_SYNC_START_DATE),
            projects=_projects(read("JIRA_PROJECTS")),
            lookback=timedelta(minutes=_int(read, "JIRA_LOOKBACK_MINUTES", 10, minimum=0)),
            schedule_cron=_cron(read("JIRA_SCHEDULE_CRON") or "0 2 * * *"),
            sensor_interval_s=_int(read, "JIRA_SENSOR_INTERVAL_S", 300, minimum=30),
            freshness_tolerance=timedelta(
                minutes=_int(read, "JIRA_FRESHNESS_TOLERANCE_MINUTES", 120, minimum=1)
            ),
            consistency_lag=timedelta(
                minutes=_int(read, "JIRA_CONSISTENCY_LAG_MINUTES", 15, minimum=0)
            ),
        )


def _date(read: Reader, name: str, default: date) -> date:
    raw = read(name)
    if raw is None:
        return default
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise JiraConfigError(name, f"must be a date like 2024-01-31, got {raw!r}") from None
    if value > date.today():
        raise JiraConfigError(name, f"is in the future ({raw}): no partition would exist yet")
    return value


def _int(read: Reader, name: str, default: int, *, minimum: int) -> int:
    raw = read(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JiraConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise JiraConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def _projects(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    keys = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for key in keys:
        try:
            quote_project_key(key)
        except ValueError:
            raise JiraConfigError(
                "JIRA_PROJECTS", f"holds {key!r}, which is not a Jira project key (like ENG)"
            ) from None
    return keys


def _cron(raw: str) -> str:
    if not _CRON.match(raw):
        raise JiraConfigError("JIRA_SCHEDULE_CRON", f"must be a 5-field cron string, got {raw!r}")
    return raw
