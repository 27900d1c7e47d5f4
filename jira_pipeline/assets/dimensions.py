"""The dimension assets' shared shape: full refresh, upserted, vanished rows marked deleted."""

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import IO_MANAGER_KEY, JiraRecordStream, writing_store
from jira_pipeline.jira import JiraClient
from jira_pipeline.jira.models import JiraRecord
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.io_manager import CONNECTION_METADATA_KEY
from jira_pipeline.storage.upserts import mark_deleted_except

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

    `referenced` runs in the step before the walk starts (the store is read there, never from
    the walk's event-loop thread); `fetch` runs after the listing with the ids the plan chose,
    and yields the JSON of those Jira still has. Ids kept are not marked deleted.
    """

    def referenced(self, db: Database, connection_id: str) -> ReferencedRows: ...

    def fetch(self, client: JiraClient, ids: list[str]) -> AsyncIterable[dict[str, Any]]: ...


@dataclass(frozen=True)
class Dimension:
    """What differs between the projects, statuses and users assets."""

    asset_name: str
    entity: str
    description: str
    record_type: type[JiraRecord]
    walk: Callable[[JiraClient, PipelineSettings], AsyncIterable[dict[str, Any]]]
    preview_fields: tuple[str, ...]
    completion: DimensionCompletion | None = field(default=None)


def build_dimension_asset(
    site: JiraSite, dimension: Dimension, settings: PipelineSettings
) -> dg.AssetsDefinition:
    spec = entity_spec(dimension.entity)

    @dg.asset(
        key=site.asset_key(dimension.asset_name),
        group_name=site.group_name,
        description=dimension.description,
        io_manager_key=IO_MANAGER_KEY,
        required_resource_keys={site.resource_key, IO_MANAGER_KEY},
        retry_policy=NETWORK_RETRY_POLICY,
        metadata={
            CONNECTION_METADATA_KEY: site.connection_id,
            "mongo/collection": spec.collection,
        },
        kinds={"jira", "mongodb"},
        tags={"jira/connection": site.name},
    )
    def dimension_asset(context: dg.AssetExecutionContext) -> JiraRecordStream:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        mongo = writing_store(context)
        seen: set[str] = set()

        # Written by the walk, read once it has finished.
        completed: dict[str, int] = {}
        kept: set[str] = set()
        if dimension.completion is not None:
            completed.update(referenced_not_listed=0, fetched_one_by_one=0, kept_without_fetch=0)
        references = (
            dimension.completion.referenced(mongo.get_database(), site.connection_id)
            if dimension.completion is not None
            else None
        )
        referenced = references.ids if references is not None else set()

        def jira_id(raw: dict[str, Any]) -> str:
            return str(getattr(dimension.record_type.from_raw(raw, site.connection_id),
                               spec.id_field))

        async def walk(client: JiraClient) -> AsyncIterator[dict[str, Any]]:
            listed: set[str] = set()
            async for raw in dimension.walk(client, settings):
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

        def mark_vanished() -> Mapping[str, Any]:
            if not seen:
                # An empty answer is far likelier a permission change than a site emptied of
                # every row; marking everything deleted would be the wrong guess.
                context.log.warning(f"Jira returned no {dimension.entity}: nothing marked deleted")
                return {"marked_deleted": 0, **completed}
            marked = mark_deleted_except(
                mongo.get_database(), dimension.entity, site.connection_id, seen | kept
            )
            if completed.get("referenced_not_listed"):
                context.log.info(
                    f"{completed['referenced_not_listed']} referenced {dimension.entity} were "
                    f"not listed by Jira; fetched {completed['fetched_one_by_one']} one by one, "
                    f"kept {completed['kept_without_fetch']} as stored"
                )
            return {"marked_deleted": marked, **completed}

        return JiraRecordStream(
            jira,
            walk,
            to_record,
            preview_fields=dimension.preview_fields,
            after_write=mark_vanished,
        )

    return dimension_asset
