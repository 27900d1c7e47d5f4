"""The dimension assets: one step per site, each a full refresh, upserted, vanished rows
marked deleted."""

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.checks import (
    SPRINTS_CHECK,
    dimension_check_results,
    dimension_check_specs,
    selected_checks,
)
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.sensors import referenced_rows
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import JiraRecordStream, failing_fast, stored_asset_spec
from jira_pipeline.jira import ClientCounters, JiraClient, counted
from jira_pipeline.jira.models import JiraRecord
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.io_manager import Tombstone
from jira_pipeline.storage.resources import MongoResource

# Network-bound assets retry a failed step (after the client's own request retries gave up),
# with exponential backoff and jitter so that several runs do not return at the same moment.
NETWORK_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class ReferencedRows(Protocol):
    """The rows stored issues reference, read before the walk, and what to do with those the
    listing leaves out."""

    ids: set[str]

    def plan(self, missing: list[str]) -> tuple[list[str], set[str]]:
        """(ids to fetch one by one, ids to keep as stored without a fetch this run)."""
        ...


class DimensionCompletion(Protocol):
    """Fetches the rows a dimension's listing left out but stored issues reference.

    `group` names the ids issues reference of the dimension (a group of `referenced_rows`:
    "users", "sprints"). `referenced` runs in the step before the walk starts, with those ids
    (the store is read there, never from the walk's event-loop thread); `fetch` runs after the
    listing with the ids the plan chose, and yields the JSON of those Jira still has. Ids kept
    are not marked deleted.
    """

    group: str

    def referenced(self, db: Database, connection_id: str, ids: set[str]) -> ReferencedRows: ...

    def fetch(self, client: JiraClient, ids: list[str]) -> AsyncIterable[dict[str, Any]]: ...


@dataclass
class Prefetched:
    """A dimension's whole listing, asked when its step started, and what asking cost (its
    own requests, counted apart from the others asked at the same time)."""

    rows: list[dict[str, Any]]
    error: Exception | None
    spent: ClientCounters
    seconds: float

    async def replay(self) -> AsyncIterator[dict[str, Any]]:
        if self.error is not None:
            raise self.error  # where the dimension's own walk would have raised it
        for row in self.rows:
            yield row


async def prefetch_listings(
    client: JiraClient, walks: Mapping[str, Callable[[JiraClient], AsyncIterable[dict[str, Any]]]]
) -> dict[str, Prefetched]:
    """Every walk at once (the client's limiter paces and bounds their requests), each listing
    held whole. A failed walk keeps its error for its dimension to raise when it is written:
    the dimensions before it are written, as when each was asked in turn."""

    async def one(walk: Callable[[JiraClient], AsyncIterable[dict[str, Any]]]) -> Prefetched:
        started = time.perf_counter()
        # `gather` runs each walk as a task with its own copy of the context: the ledger
        # counts this walk's requests only.
        with counted(ClientCounters()) as ledger:
            try:
                rows = [row async for row in walk(client)]
            except Exception as error:
                return Prefetched([], error, ledger, time.perf_counter() - started)
        return Prefetched(rows, None, ledger, time.perf_counter() - started)

    fetched = await asyncio.gather(*(one(walk) for walk in walks.values()))
    return dict(zip(walks, fetched, strict=True))


class StepListings:
    """Listings read whole by one dimension's walk, kept for the step's later walks that start
    from the same listing: the sprints walk asks every board the boards walk listed, the
    versions and components walks every project. One step runs its dimensions one after the
    other (each stream is written before the next starts), so a listing is asked once per run
    where both are selected, and still asked when either is materialized alone.

    A listing is kept only once it ended: one cut short (an error, a consumer that stopped) is
    asked again by the next walk, which then fails or converges as it would alone.

    The small listings (`Dimension.prefetch`) of the step's selected dimensions are asked at
    once when the step starts (`prefetch`), each handed to its dimension when it is written."""

    def __init__(self, referenced_groups: Sequence[str] = ()) -> None:
        self._whole: dict[str, list[dict[str, Any]]] = {}
        self._prefetched: dict[str, Prefetched] = {}
        self._referenced_groups = tuple(referenced_groups)
        self._referenced: dict[str, set[str]] | None = None

    def referenced(self, db: Database, connection_id: str, group: str) -> set[str]:
        """The ids live stored issues reference of `group`, read in one pass for every group
        the step was given (users and sprints were a pass each, and the sprints check a third)
        when the first is asked: after the step's dimensions before it are written, since the
        sprint field's id comes from `jira_fields`. The step itself writes no issue after that
        pass (the copied names are the projects' and statuses', written before it). An issue
        run may overlap a dimensions run, though: what it writes meanwhile is judged by the
        next evaluation and by the refresh sensor, which requests the refresh of a dimension
        missing a referenced row; `referenced_sprints_stored` judges the step's one reading."""
        if self._referenced is None or group not in self._referenced:
            groups = {*self._referenced_groups, group}
            self._referenced = referenced_rows(db, connection_id, people="users" in groups,
                                               references=(), sprints="sprints" in groups)
        return self._referenced[group]

    def prefetch(self, jira: JiraResource, settings: PipelineSettings,
                 dimensions: Sequence["Dimension"]) -> None:
        walks = {dimension.asset_name: dimension.listing(settings) for dimension in dimensions}
        with failing_fast():  # a client that cannot be built fails the step here, named
            self._prefetched = jira.run(lambda client: prefetch_listings(client, walks))
        for dimension in dimensions:
            fetched = self._prefetched[dimension.asset_name]
            if dimension.shared_as is not None and fetched.error is None:
                self._whole[dimension.shared_as] = fetched.rows

    def take_prefetched(self, asset_name: str) -> Prefetched | None:
        """The dimension's prefetched listing, once (the rows are let go once written)."""
        return self._prefetched.pop(asset_name, None)

    async def rows(
        self, name: str, listing: Callable[[], AsyncIterable[dict[str, Any]]]
    ) -> AsyncIterator[dict[str, Any]]:
        kept = self._whole.get(name)
        if kept is not None:
            for row in kept:
                yield row
            return
        rows: list[dict[str, Any]] = []
        async for row in listing():
            rows.append(row)
            yield row
        self._whole[name] = rows


Walk = Callable[[JiraClient, PipelineSettings], AsyncIterable[dict[str, Any]]]
# A walk that also counts what it skipped into the dict it is given (the run's metadata), and
# may start from a listing another dimension of its step already read.
CountedWalk = Callable[[JiraClient, PipelineSettings, dict[str, int], StepListings],
                       AsyncIterable[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class Dimension:
    """What differs between the projects, statuses and users assets: each has a `walk`, or a
    `counted_walk` when it reports what it skipped."""

    asset_name: str
    entity: str
    description: str
    record_type: type[JiraRecord]
    walk: Walk | None = None
    counted_walk: CountedWalk | None = None
    preview_fields: tuple[str, ...]
    completion: DimensionCompletion | None = field(default=None)
    # The name under which `walk`'s rows are kept for the step's later walks (StepListings).
    shared_as: str | None = None
    # The listing is small (a site's configuration, not its activity: statuses, fields, the
    # projects, the boards) and a plain `walk`: the step asks for it when it starts, at the
    # same time as the other such dimensions selected, and holds it until it is written.
    prefetch: bool = False

    def listing(self, settings: PipelineSettings
                ) -> Callable[[JiraClient], AsyncIterable[dict[str, Any]]]:
        walk = self.walk
        if walk is None or self.counted_walk is not None:
            raise TypeError(f"dimension {self.asset_name} has no plain walk to prefetch")
        return lambda client: walk(client, settings)

    def rows(
        self,
        client: JiraClient,
        settings: PipelineSettings,
        counts: dict[str, int],
        listings: StepListings,
    ) -> AsyncIterable[dict[str, Any]]:
        if self.counted_walk is not None:
            return self.counted_walk(client, settings, counts, listings)
        walk = self.walk
        if walk is None:
            raise TypeError(f"dimension {self.asset_name} has no walk")
        if self.shared_as is not None:
            return listings.rows(self.shared_as, lambda: walk(client, settings))
        return walk(client, settings)


DIMENSIONS_STEP = "jira_dimensions"


def dimension_spec(site: JiraSite, dimension: Dimension) -> dg.AssetSpec:
    return stored_asset_spec(
        site, entity_spec(dimension.entity).collection, dimension.description,
        # A dimension that completes its listing from the references of stored issues (users)
        # reads them: it follows the issues step, so this run's issues' references are fetched.
        deps=[site.asset_key("jira_issues")] if dimension.completion is not None else [],
    )


def build_dimension_assets(
    site: JiraSite, dimensions: Sequence[Dimension], settings: PipelineSettings
) -> dg.AssetsDefinition:
    """The dimensions (projects, statuses, users) of a site as one step: each keeps its asset
    key, and its output is written by the IO manager with its own materialization; its checks
    are evaluated once that output is written. Any subset of them (and of their checks) may be
    selected alone."""
    by_key = {site.asset_key(dimension.asset_name): dimension for dimension in dimensions}

    @dg.multi_asset(
        name=site.object_name(DIMENSIONS_STEP),
        specs=[dimension_spec(site, dimension) for dimension in dimensions],
        check_specs=[
            check for dimension in dimensions
            for check in dimension_check_specs(site, dimension.asset_name)
        ],
        can_subset=True,
        retry_policy=NETWORK_RETRY_POLICY,
    )
    @with_site_resource(site)
    def dimension_assets(
        context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        selected = [dimension for key, dimension in by_key.items()
                    if key in context.selected_asset_keys]
        groups = {dimension.completion.group for dimension in selected
                  if dimension.completion is not None}
        if SPRINTS_CHECK in selected_checks(context, site.asset_key("jira_sprints")):
            groups.add("sprints")
        # This attempt's: a retried step lists anew.
        listings = StepListings(sorted(groups))
        small = [dimension for dimension in selected if dimension.prefetch]
        if len(small) > 1:
            listings.prefetch(jira, settings, small)
        for key, dimension in by_key.items():
            if key in context.selected_asset_keys:
                # handle_output writes the stream before this generator resumes.
                yield dg.Output(
                    dimension_stream(context, jira, mongo, site, dimension, settings, listings),
                    output_name=context.assets_def.get_output_name_for_asset_key(key),
                )
            yield from dimension_check_results(
                context, mongo.get_database(), site, dimension.asset_name, listings.referenced
            )

    return dimension_assets


def dimension_stream(
    context: dg.AssetExecutionContext,
    jira: JiraResource,
    mongo: MongoResource,
    site: JiraSite,
    dimension: Dimension,
    settings: PipelineSettings,
    listings: StepListings | None = None,
) -> JiraRecordStream:
    """A full refresh of one dimension: every row Jira lists (and those stored issues reference
    that the listing left out), then the tombstone of the stored rows it no longer has."""
    spec = entity_spec(dimension.entity)
    seen: set[str] = set()
    step_listings = listings if listings is not None else StepListings()

    # Written by the walk, read once it has finished.
    completed: dict[str, int] = {}
    kept: set[str] = set()
    if dimension.completion is not None:
        completed.update(referenced_not_listed=0, fetched_one_by_one=0, kept_without_fetch=0)
    prefetched = step_listings.take_prefetched(dimension.asset_name)
    references = None
    if dimension.completion is not None:
        db = mongo.get_database()
        group = dimension.completion.group
        references = dimension.completion.referenced(
            db, site.connection_id, step_listings.referenced(db, site.connection_id, group))
    referenced = references.ids if references is not None else set()

    def jira_id(raw: dict[str, Any]) -> str:
        return str(getattr(dimension.record_type.from_raw(raw, site.connection_id),
                           spec.id_field))

    async def walk(client: JiraClient) -> AsyncIterator[dict[str, Any]]:
        listed: set[str] = set()
        rows = (prefetched.replay() if prefetched is not None
                else dimension.rows(client, settings, completed, step_listings))
        async for raw in rows:
            if referenced:
                listed.add(jira_id(raw))
            yield raw
        missing = sorted(referenced - listed)
        if dimension.completion is None or references is None or not missing:
            return
        # The listing was capped or incomplete: fetch referenced rows one by one.
        fetch, keep = references.plan(missing)
        kept.update(keep)
        found = 0
        async for raw in dimension.completion.fetch(client, fetch):
            found += 1
            yield raw
        completed.update(referenced_not_listed=len(missing), fetched_one_by_one=found,
                         kept_without_fetch=len(keep))

    def to_record(raw: dict[str, Any]) -> JiraRecord:
        record = dimension.record_type.from_raw(raw, site.connection_id)
        seen.add(str(getattr(record, spec.id_field)))
        return record

    def vanished() -> Iterator[Tombstone]:
        if not seen:
            # An empty answer is far likelier a permission change than a site emptied of
            # every row; marking everything deleted would be the wrong guess.
            context.log.warning(f"Jira returned no {dimension.entity}: nothing marked deleted")
            return
        if completed.get("referenced_not_listed"):
            context.log.info(
                f"{completed['referenced_not_listed']} referenced {dimension.entity} were "
                f"not listed by Jira; fetched {completed['fetched_one_by_one']} one by one, "
                f"kept {completed['kept_without_fetch']} as stored"
            )
        yield Tombstone.all_except(dimension.entity, seen | kept)

    return JiraRecordStream(
        jira,
        walk,
        to_record,
        preview_fields=dimension.preview_fields,
        deletions=vanished,
        report=lambda: completed,
        spent_before=(prefetched.spent, prefetched.seconds) if prefetched is not None else None,
    )
