"""`JiraRecordStream`: what an asset returns: Jira records fetched while the IO manager writes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import BaseModel

from jira_pipeline.assets.progress import WalkProgress
from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.jira import JiraClient
from jira_pipeline.jira.retry import cannot_succeed
from jira_pipeline.storage.connections import JiraConnectionError, StaleRefreshTokenError
from jira_pipeline.storage.io_manager import RecordStream
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sync_errors import UnstorableRecord

PREVIEW_ROWS = 5
IO_MANAGER_KEY = "mongo_io_manager"


def writing_store(context: dg.AssetExecutionContext) -> MongoResource:
    """The store the IO manager writes this asset's records through.

    Marking vanished rows deleted reads through that same client rather than opening another:
    one client per run means one set of connections (and, on the embedded store, one set of
    SQLite files opened) per run.
    """
    return getattr(context.resources, IO_MANAGER_KEY).mongo


@contextmanager
def failing_fast() -> Iterator[None]:
    """Errors that no retry can fix fail the step at once, named as the failure's headline.

    Without this, the step's RetryPolicy retries a 401 twice, 30 s and more apart, and the run
    fails minutes later with "Exceeded max_retries" as its message.
    """
    try:
        yield
    except Exception as error:
        misconfigured = isinstance(error, JiraConnectionError) and not isinstance(
            error, StaleRefreshTokenError
        )
        if not (cannot_succeed(error) or misconfigured):
            raise
        cause = type(error).__name__
        raise dg.Failure(
            description=f"{cause}: {error}",
            metadata={"cause": cause, "http_status": getattr(error, "status", None) or 0},
            allow_retries=False,
        ) from error


class JiraRecordStream(RecordStream):
    """Jira records produced one at a time while the IO manager writes them in batches.

    Nothing is held beyond the record in hand and a few preview rows, so memory does not grow
    with the size of a partition. `final_metadata()` runs after the last write: it reports what
    the fetch cost and runs `after_write` (marking rows that vanished from Jira as deleted), which
    must see every record of this run already stored.
    """

    def __init__(
        self,
        jira: JiraResource,
        walk: Callable[[JiraClient], AsyncIterable[dict[str, Any]]],
        to_record: Callable[[dict[str, Any]], BaseModel],
        *,
        preview_fields: tuple[str, ...],
        after_write: Callable[[], Mapping[str, Any]] | None = None,
        progress: WalkProgress | None = None,
    ) -> None:
        super().__init__(self._fetch(), self._report)
        self._progress = progress
        self._jira = jira
        self._walk = walk
        self._to_record = to_record
        self._preview_fields = preview_fields
        self._after_write = after_write
        self.fetched = 0
        self._preview: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        with failing_fast():  # the first use of the resource builds its client
            self._counters_before = jira.counters()

    def _fetch(self) -> Iterator[BaseModel | UnstorableRecord]:
        self._started = time.perf_counter()
        with failing_fast():
            for raw in self._jira.iterate(self._walk, progress=self._progress):
                self.fetched += 1
                try:
                    record = self._to_record(raw)
                except ValueError as error:
                    # One record Jira sent that cannot be stored must not block the others: the
                    # IO manager files it in jira_sync_errors and the run goes on.
                    yield UnstorableRecord.from_error(raw, error)
                    continue
                if len(self._preview) < PREVIEW_ROWS:
                    self._preview.append(record.model_dump(include=set(self._preview_fields)))
                yield record

    def _report(self) -> dict[str, Any]:
        with failing_fast():
            extra = dict(self._after_write()) if self._after_write is not None else {}
        elapsed = time.perf_counter() - self._started
        spent = counter_delta(self._counters_before, self._jira.counters())
        return {
            "records_fetched": self.fetched,
            **extra,
            "api_calls": int(spent["api_calls"]),
            "search_calls": int(spent["search_calls"]),
            "retries": int(spent["retries"]),
            "rate_limit_waits": int(spent["rate_limit_waits"]),
            "rate_limit_wait_s": dg.MetadataValue.float(spent["wait_seconds"]),
            "token_refreshes": int(spent["token_refreshes"]),
            "bytes_received": int(spent["bytes_received"]),
            "fetch_duration_s": dg.MetadataValue.float(round(elapsed, 3)),
            "records_per_s": dg.MetadataValue.float(round(self.fetched / max(elapsed, 1e-9), 1)),
            "preview": dg.MetadataValue.md(markdown_table(self._preview, self._preview_fields)),
        }


def markdown_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    if not rows:
        return "_no records in this run_"
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(row.get(column)) for column in columns) + " |\n" for row in rows
    )
    return header + body


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:80]
