"""`JiraRecordStream`: what an asset hands the IO manager: Jira records fetched while it writes
them, then the rows proven gone."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import BaseModel

from jira_pipeline.assets.progress import WalkProgress
from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.jira import ClientCounters, JiraClient
from jira_pipeline.jira.retry import cannot_succeed
from jira_pipeline.storage.connections import JiraConnectionError, StaleRefreshTokenError
from jira_pipeline.storage.io_manager import (
    CONNECTION_METADATA_KEY,
    Tombstone,
    Upsert,
    WriteItem,
    WriteStream,
)
from jira_pipeline.storage.sync_errors import UnstorableRecord

PREVIEW_ROWS = 5
IO_MANAGER_KEY = "mongo_io_manager"

if TYPE_CHECKING:
    from jira_pipeline.assets.sites import JiraSite


def stored_asset_spec(
    site: JiraSite, collection: str, description: str, *,
    deps: Iterable[dg.AssetKey | dg.AssetDep] = (), metadata: Mapping[str, Any] | None = None,
    kinds: Iterable[str] = ("jira", "mongodb"),
) -> dg.AssetSpec:
    """The spec of a site's asset named after the MongoDB collection the IO manager writes its
    output to, under the site's connection (its metadata says which)."""
    return dg.AssetSpec(
        key=site.asset_key(collection),
        deps=list(deps),
        group_name=site.group_name,
        description=description,
        metadata={CONNECTION_METADATA_KEY: site.connection_id, "mongo/collection": collection,
                  **(metadata or {})},
        kinds=set(kinds),
        tags={"jira/connection": site.name},
    ).with_io_manager_key(IO_MANAGER_KEY)


def _as_failure(error: Exception) -> dg.Failure:
    misconfigured = isinstance(error, JiraConnectionError) and not isinstance(
        error, StaleRefreshTokenError
    )
    cause = type(error).__name__
    return dg.Failure(
        description=f"{cause}: {error}",
        metadata={"cause": cause, "http_status": getattr(error, "status", None) or 0},
        allow_retries=not (cannot_succeed(error) or misconfigured),
    )


@contextmanager
def failing_fast() -> Iterator[None]:
    """Errors that no retry can fix fail the step at once, named as the failure's headline.

    Without this, the step's RetryPolicy retries a 401 twice, 30 s and more apart, and the run
    fails minutes later with "Exceeded max_retries" as its message.
    """
    try:
        yield
    except Exception as error:
        failure = _as_failure(error)
        if failure.allow_retries:
            raise
        raise failure from error


@contextmanager
def reported_as_itself() -> Iterator[None]:
    """Every error raised while the IO manager drains a stream fails the step as itself.

    Dagster wraps what `handle_output` raises as "Error occurred while handling output", unless
    it is a `dg.Failure`: so the error becomes one, its type and message as the headline, its
    retry classification kept (`allow_retries`: a network error may be retried by the step's
    RetryPolicy, an error that cannot succeed fails at once, as `failing_fast`).
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        raise _as_failure(error) from error


class JiraRecordStream(WriteStream):
    """Jira records fetched one at a time while the IO manager writes them in batches.

    The walk's records, then those of `then` (more records, say the issues a census found
    missing), each as an `Upsert`; then the `Tombstone`s of `deletions` (called once every
    record was handed over: the rows the reconciliation proved gone). Nothing is held beyond the
    record in hand and a few preview rows, so memory does not grow with the size of a
    partition. `metadata()` (asked by the IO manager after the last write) reports what the
    fetch cost, with `report`'s figures.
    """

    def __init__(
        self,
        jira: JiraResource,
        walk: Callable[[JiraClient], AsyncIterable[dict[str, Any]]],
        to_record: Callable[[dict[str, Any]], BaseModel],
        *,
        preview_fields: tuple[str, ...],
        then: Callable[[], Iterable[BaseModel | UnstorableRecord]] | None = None,
        deletions: Callable[[], Iterable[Tombstone]] | None = None,
        report: Callable[[], Mapping[str, Any]] | None = None,
        progress: WalkProgress | None = None,
        spent_before: tuple[ClientCounters, float] | None = None,
    ) -> None:
        super().__init__(self._stream(), self._report)
        # What fetching cost before this stream was drained (a listing asked when the step
        # started): its requests and seconds, added to the figures.
        self._spent_before = spent_before
        self._progress = progress
        self._jira = jira
        self._walk = walk
        self._to_record = to_record
        self._preview_fields = preview_fields
        self._then = then
        self._deletions = deletions
        self._extra = report
        self.fetched = 0
        self._preview: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        with failing_fast():  # the first use of the resource builds its client
            self._counters_before = jira.counters()

    def _stream(self) -> Iterator[WriteItem]:
        with reported_as_itself():
            for record in self._fetch():
                yield Upsert(record)
            if self._then is not None:
                for record in self._then():
                    yield Upsert(record)
            if self._deletions is not None:
                yield from self._deletions()

    def _fetch(self) -> Iterator[BaseModel | UnstorableRecord]:
        self._started = time.perf_counter()
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
        with reported_as_itself():
            extra = dict(self._extra()) if self._extra is not None else {}
            spent = counter_delta(self._counters_before, self._jira.counters())
        elapsed = time.perf_counter() - self._started
        if self._spent_before is not None:
            earlier, seconds = self._spent_before
            spent = {name: value + earlier.as_dict()[name] for name, value in spent.items()}
            elapsed += seconds
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
