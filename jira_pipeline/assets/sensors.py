"""`jira_refresh_sensor`: asks Jira cheaply what changed and requests exactly the runs needed."""

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.jobs import SiteJobs
from jira_pipeline.assets.partitions import partition_keys_between
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.jira import IssueWindow, JiraClient, build_issue_jql
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.timeutil import from_epoch_ms, parse_jira_datetime, to_epoch_ms, utc_now

# Past this look-back, stored_newest_updated searches everything (1, 8, 64, ... days before).
_WHOLE_HISTORY = timedelta(days=4096)


@dataclass(frozen=True)
class RefreshCursor:
    """The newest `updated` (epoch ms) already handed to a run: the sensor's high-water mark."""

    newest_updated_ms: int

    @classmethod
    def parse(cls, text: str | None) -> "RefreshCursor | None":
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None  # an unreadable cursor restarts from what is stored

    def dump(self) -> str:
        return json.dumps(asdict(self))


async def newest_updated(client: JiraClient, jql: str) -> datetime | None:
    """The `updated` of the most recently updated issue matching `jql`: one request, one issue."""
    async for issue in client.search_issues(jql, fields=("updated",), page_size=1):
        return parse_jira_datetime((issue.get("fields") or {}).get("updated"))
    return None


def stored_newest_updated(db: Database, connection_id: str) -> datetime | None:
    """The newest `updated` of the connection's live stored issues.

    Looks back in widening windows so that the sort only ever sees recent documents: a server
    answers each look from the `updated` index, and the embedded store, which sorts whole
    documents in memory, never holds more than the window's.
    """
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    now = utc_now()
    reach = timedelta(days=1)
    while True:
        recent = {"updated": {"$gte": now - reach}} if reach < _WHOLE_HISTORY else {}
        newest = db["jira_issues"].find_one(
            {**live, **recent}, {"updated": 1, "_id": 0}, sort=[("updated", -1)]
        )
        if newest and newest.get("updated"):
            return parse_jira_datetime(newest["updated"])
        if not recent:
            return None
        reach *= 8


def missing_references(db: Database, connection_id: str) -> dict[str, list[str]]:
    """Statuses and users that stored issues point at but the dimension collections lack."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    # One pass over three small fields of each issue. `distinct` would scan the issues three
    # times, is capped at 16 MB of values on a server, and in the embedded store holds every
    # whole document (raw JSON included) in memory at once.
    referenced_statuses: set[str] = set()
    people: set[str] = set()
    fields = ("status_id", "assignee_account_id", "reporter_account_id")
    for doc in db["jira_issues"].find(live, {**dict.fromkeys(fields, 1), "_id": 0}):
        referenced_statuses.add(doc.get("status_id"))
        people.update((doc.get("assignee_account_id"), doc.get("reporter_account_id")))
    statuses = referenced_statuses - set(db["jira_statuses"].distinct("status_id", live))
    users = people - set(db["jira_users"].distinct("account_id", live))
    return {
        "statuses": sorted(s for s in statuses if s),
        "users": sorted(u for u in users if u),
    }


def build_refresh_sensor(
    site: JiraSite,
    jobs: SiteJobs,
    partitions: dg.DailyPartitionsDefinition,
    settings: PipelineSettings,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=site.object_name("jira_refresh_sensor"),
        jobs=[jobs.issues, jobs.dimensions],
        minimum_interval_seconds=settings.sensor_interval_s,
        required_resource_keys={site.resource_key, "mongo"},
        description="Polls Jira with a one-issue search for anything updated since its cursor and "
        "requests a run of the affected jira_issues partitions; requests a dimension refresh "
        "when synced issues reference a status or user missing from MongoDB.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def jira_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        db = context.resources.mongo.get_database()
        now = utc_now()
        cursor = RefreshCursor.parse(context.cursor)
        if cursor is None:
            # First tick: start from what is already stored (or today's start), so a fresh
            # sensor asks for today's delta rather than the whole history.
            stored = stored_newest_updated(db, site.connection_id)
            since = stored or now.replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            since = from_epoch_ms(cursor.newest_updated_ms)
        run_requests: list[dg.RunRequest] = []
        new_cursor = cursor.dump() if cursor else None

        window = IssueWindow(since + timedelta(milliseconds=1), now + timedelta(days=1))
        jql = build_issue_jql(window, projects=settings.projects or None, order_by="updated DESC")
        newest = jira.run(lambda client: newest_updated(client, jql))
        if newest is not None and newest > since:
            keys = partition_keys_between(partitions, since, newest)
            newest_ms = to_epoch_ms(newest)
            run_requests.append(
                dg.RunRequest(
                    job_name=jobs.issues.name,
                    run_key=f"refresh:{site.name}:{newest_ms}",
                    tags={**site.issue_run_tags, **partition_range_tags(keys[0], keys[-1])},
                )
            )
            new_cursor = RefreshCursor(newest_ms).dump()
        elif cursor is None:
            new_cursor = RefreshCursor(to_epoch_ms(since)).dump()

        missing = missing_references(db, site.connection_id)
        for entity, ids in missing.items():
            if not ids:
                continue
            digest = hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]
            context.log.info(f"{len(ids)} {entity} referenced by issues are not stored")
            run_requests.append(
                dg.RunRequest(
                    job_name=jobs.dimensions.name,
                    asset_selection=[site.asset_key(f"jira_{entity}")],
                    # The same missing set never triggers twice: if a refresh cannot find them,
                    # the asset check reports it instead of the sensor looping.
                    run_key=f"dimension:{site.name}:{entity}:{digest}",
                    tags=site.run_tags,
                )
            )
        if not run_requests:
            return dg.SensorResult(
                skip_reason=f"nothing updated in Jira since {since.isoformat()}",
                cursor=new_cursor,
            )
        return dg.SensorResult(run_requests=run_requests, cursor=new_cursor)

    return jira_refresh_sensor


