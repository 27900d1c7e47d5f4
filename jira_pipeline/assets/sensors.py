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


# Every run the sensor requests carries these: the site, and the request it answers.
REFRESH_TAG = "jira/refresh"
REFRESH_REQUEST_TAG = "jira/refresh_request"
# Runs not finished yet: a change they cover is neither acknowledged nor requested again.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.MANAGED,
    dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUSPENDED,
    dg.DagsterRunStatus.CANCELING,
]
# More changes than this in one look, and the sensor stops comparing them with the store one by
# one: it requests the whole stretch.
RECENT_LIMIT = 1000


@dataclass(frozen=True)
class PendingRefresh:
    """A run the sensor requested and has not yet seen succeed."""

    run_key: str
    through_ms: int  # the newest `updated` (epoch ms) Jira showed when it was requested
    attempt: int = 0


@dataclass(frozen=True)
class RefreshCursor:
    """The sensor's memory, serialized as JSON.

    `acknowledged_ms` (epoch ms): every change Jira showed up to then is stored by a run that
    succeeded (or was already stored). It moves only then, never when a run is merely requested.
    """

    acknowledged_ms: int
    pending: PendingRefresh | None = None

    @classmethod
    def parse(cls, text: str | None) -> "RefreshCursor | None":
        if not text:
            return None
        try:
            data = json.loads(text)
            pending = data.get("pending")
            return cls(
                int(data["acknowledged_ms"]),
                PendingRefresh(**pending) if pending is not None else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # an unreadable (or older) cursor restarts from what is stored

    def dump(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Settled:
    """What became of the pending request: acknowledged, still running, or to be asked again."""

    acknowledged_ms: int
    in_flight: str | None = None  # the run id still covering the pending changes
    rekey: str | None = None  # a suffix making the next request's run key new


def settle_pending(instance: dg.DagsterInstance, cursor: RefreshCursor) -> Settled:
    """Look up the runs of the pending request (by tag: whoever launched them)."""
    pending = cursor.pending
    if pending is None:
        return Settled(cursor.acknowledged_ms)
    runs = instance.get_runs(dg.RunsFilter(tags={REFRESH_REQUEST_TAG: pending.run_key}))
    if any(run.status == dg.DagsterRunStatus.SUCCESS for run in runs):
        return Settled(max(cursor.acknowledged_ms, pending.through_ms))
    unfinished = [run for run in runs if run.status in UNFINISHED]
    if unfinished:
        return Settled(cursor.acknowledged_ms, in_flight=unfinished[0].run_id)
    # Dagster skips a request whose run key was used before, even by a failed run: asking
    # again needs a new key.
    if runs:
        return Settled(cursor.acknowledged_ms, rekey=f"after:{runs[0].run_id}")
    # Never launched (the daemon creates a tick's runs before the next tick): ask again.
    return Settled(cursor.acknowledged_ms, rekey=f"retry:{pending.attempt + 1}")


def unfinished_refresh(instance: dg.DagsterInstance, site_name: str) -> str | None:
    """The id of an unfinished refresh run of the site, whichever request it answers."""
    runs = instance.get_runs(
        dg.RunsFilter(tags={REFRESH_TAG: site_name}, statuses=UNFINISHED), limit=1
    )
    return runs[0].run_id if runs else None


async def recent_updates(
    client: JiraClient, jql: str, limit: int = RECENT_LIMIT
) -> list[tuple[str, datetime]]:
    """(id, updated) of the issues matching `jql`, newest first; at most `limit` + 1."""
    found: list[tuple[str, datetime]] = []
    async for issue in client.search_issues(jql, fields=("updated",)):
        updated = parse_jira_datetime((issue.get("fields") or {}).get("updated"))
        if updated is not None:
            found.append((str(issue["id"]), updated))
        if len(found) > limit:
            break
    return found


def not_stored(
    db: Database, connection_id: str, seen: list[tuple[str, datetime]]
) -> list[tuple[str, datetime]]:
    """The issues of `seen` MongoDB lacks, holds as deleted, or holds in an older version."""
    stored = {
        doc["issue_id"]: doc
        for doc in db["jira_issues"].find(
            {"connection_id": connection_id, "issue_id": {"$in": [i for i, _ in seen]}},
            {"issue_id": 1, "updated": 1, "is_deleted": 1, "_id": 0},
        )
    }
    changed = []
    for issue_id, updated in seen:
        doc = stored.get(issue_id)
        version = parse_jira_datetime(doc.get("updated")) if doc else None
        if doc is None or doc.get("is_deleted") or version is None \
                or to_epoch_ms(version) < to_epoch_ms(updated):
            changed.append((issue_id, updated))
    return changed


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
        description="Polls Jira for issues updated since its cursor (re-reading "
        "JIRA_CONSISTENCY_LAG_MINUTES behind it) that MongoDB lacks, and requests a run of their "
        "jira_issues partitions; a change counts as seen only once such a run succeeded (a "
        "failed run's changes are requested again). Requests a dimension refresh when synced "
        "issues reference a status or user missing from MongoDB.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def jira_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        db = context.resources.mongo.get_database()
        now = utc_now()
        cursor = RefreshCursor.parse(context.cursor)
        overlap = settings.consistency_lag
        if cursor is None:
            # First tick: start from what is already stored (or today's start), so a fresh
            # sensor asks for today's delta rather than the whole history.
            stored = stored_newest_updated(db, site.connection_id)
            start = stored or now.replace(hour=0, minute=0, second=0, microsecond=0)
            overlap = overlap if stored else timedelta(0)
            cursor = RefreshCursor(to_epoch_ms(start))
        settled = settle_pending(context.instance, cursor)
        if settled.rekey:
            context.log.warning(
                f"the run requested as {cursor.pending.run_key if cursor.pending else '?'} did "
                "not succeed: requesting its changes again"
            )
        run_requests: list[dg.RunRequest] = []
        since = from_epoch_ms(settled.acknowledged_ms)
        new_cursor = RefreshCursor(settled.acknowledged_ms)
        # Never two runs for one change at once: while a refresh run is unfinished its
        # changes (and any newer ones) wait for the tick after it ends.
        waiting_for = settled.in_flight or unfinished_refresh(context.instance, site.name)
        skip_reason = f"waiting for refresh run {waiting_for} to finish"
        if waiting_for is not None:
            unsettled = settled.in_flight or settled.rekey
            new_cursor = RefreshCursor(
                settled.acknowledged_ms, cursor.pending if unsettled else None
            )
        else:
            skip_reason = f"nothing updated in Jira since {since.isoformat()}"
            # Jira Cloud's search is eventually consistent: an update can become visible after
            # newer ones, so every look re-reads `overlap` behind the acknowledged mark.
            window = IssueWindow(since - overlap, now + timedelta(days=1))
            jql = build_issue_jql(
                window, projects=settings.projects or None, order_by="updated DESC"
            )
            seen = jira.run(lambda client: recent_updates(client, jql))
            changed = seen if len(seen) > RECENT_LIMIT else not_stored(
                db, site.connection_id, seen
            )
            newest_ms = max((to_epoch_ms(updated) for _, updated in seen), default=None)
            if changed and newest_ms is not None:
                # Past the limit, `seen` is only the newest part: cover the whole window.
                oldest = window.start if len(seen) > RECENT_LIMIT else min(u for _, u in changed)
                keys = partition_keys_between(partitions, oldest, max(u for _, u in changed))
                attempt = cursor.pending.attempt + 1 if settled.rekey and cursor.pending else 0
                # Dagster launches a run key once: the key names exactly these changes.
                digest = hashlib.sha256(
                    ",".join(f"{i}@{to_epoch_ms(u)}" for i, u in sorted(changed)).encode()
                ).hexdigest()[:12]
                run_key = f"refresh:{site.name}:{newest_ms}:{digest}" + (
                    f":{settled.rekey}" if settled.rekey else ""
                )
                run_requests.append(
                    dg.RunRequest(
                        job_name=jobs.issues.name,
                        run_key=run_key,
                        tags={
                            **site.issue_run_tags,
                            **partition_range_tags(keys[0], keys[-1]),
                            REFRESH_TAG: site.name,
                            REFRESH_REQUEST_TAG: run_key,
                        },
                    )
                )
                new_cursor = RefreshCursor(
                    settled.acknowledged_ms, PendingRefresh(run_key, newest_ms, attempt)
                )
            elif newest_ms is not None:
                # Everything Jira shows is stored: acknowledged without a run.
                new_cursor = RefreshCursor(max(settled.acknowledged_ms, newest_ms))

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
            return dg.SensorResult(skip_reason=skip_reason, cursor=new_cursor.dump())
        return dg.SensorResult(run_requests=run_requests, cursor=new_cursor.dump())

    return jira_refresh_sensor


