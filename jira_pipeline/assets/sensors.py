"""`jira_refresh_sensor`: asks Jira cheaply what changed and requests exactly the runs needed."""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.jobs import ISSUE_FOLLOWERS, SiteJobs
from jira_pipeline.assets.partitions import partition_keys_between
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.jira import IssueWindow, JiraClient, build_issue_jql, run_sync
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.check_memo import SEEN_FIELDS, Seen, live_issues_by_id
from jira_pipeline.storage.issue_references import (
    ISSUE_PROJECT_PARTS,
    ISSUE_REFERENCE_DATA,
    add_referenced_ids,
    not_stored_live,
    referenced_ids_projection,
)
from jira_pipeline.storage.sprint_references import (
    add_sprint_ids,
    sprint_field_ids,
    sprint_fields_projection,
    sprints_not_stored,
)
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
    def parse(cls, text: str | None) -> RefreshCursor | None:
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


def settle_pending(
    instance: dg.DagsterInstance, cursor: RefreshCursor,
    runs_by_request: Mapping[str, Sequence[dg.DagsterRun]] | None = None,
) -> Settled:
    """Look up the runs of the pending request (by tag: whoever launched them), or find them
    in `runs_by_request` (every pending request's runs, looked up at once)."""
    pending = cursor.pending
    if pending is None:
        return Settled(cursor.acknowledged_ms)
    runs = (
        list(runs_by_request.get(pending.run_key, ()))
        if runs_by_request is not None
        else instance.get_runs(dg.RunsFilter(tags={REFRESH_REQUEST_TAG: pending.run_key}))
    )
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


# The fields of a stored issue that name a status and users.
_STATUS_AND_PEOPLE = ("status_id", "assignee_account_id", "reporter_account_id")


def _add_status_and_people(
    doc: dict[str, Any], statuses: set[str | None], people: set[str | None]
) -> None:
    statuses.add(doc.get("status_id"))  # None included: dropped once the stored are taken
    people.update((doc.get("assignee_account_id"), doc.get("reporter_account_id")))


def _statuses_and_users_not_stored(
    db: Database, live: dict[str, Any], referenced_statuses: set[str | None],
    people: set[str | None],
) -> dict[str, list[str]]:
    statuses = referenced_statuses - set(db["jira_statuses"].distinct("status_id", live))
    users = people - set(db["jira_users"].distinct("account_id", live))
    return {
        "statuses": sorted(s for s in statuses if s),
        "users": sorted(u for u in users if u),
    }


# The ids of `raw.fields` the sensor looks for in the dimensions, besides statuses, users and
# sprints.
_SENSOR_REFERENCES = ISSUE_REFERENCE_DATA + ISSUE_PROJECT_PARTS


def missing_dimension_rows(
    db: Database, connection_id: str, *, people: bool = True,
    references: tuple[tuple[str, str], ...] = _SENSOR_REFERENCES, sprints: bool = True,
) -> dict[str, list[str]]:
    """Per dimension entity (`jira_<entity>` is its asset), the rows live issues reference that
    it does not store live: statuses and users (`people`), the reference data, versions and
    components named by `references`, and sprints, in that order (the order the sensor requests
    their refreshes in; the checks ask for the groups they judge). The result equals a pass
    per group taken together."""
    referenced = referenced_rows(db, connection_id, people=people, references=references,
                                 sprints=sprints)
    return rows_not_stored(db, connection_id, referenced)


def referenced_rows(
    db: Database, connection_id: str, *, people: bool,
    references: tuple[tuple[str, str], ...], sprints: bool, only: list[Any] | None = None,
    seen: Seen | None = None,
) -> dict[str, set[str]]:
    """Per dimension entity (the groups of `missing_dimension_rows`), the ids live issues
    reference; with `only`, the ids the issues of those `_id`s reference. With `seen`, what
    the pass read of each issue for a check's memo (storage/check_memo.py).

    One projected pass over the issues gathers every referenced id (it was one for each group,
    each reading every live issue); the referenced ids are as many as the site has rows, never
    one per issue."""
    live: dict[str, Any] = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    sprint_fields = sprint_field_ids(db, connection_id) if sprints else []
    projection = {
        **(dict.fromkeys(_STATUS_AND_PEOPLE, 1) if people else {}),
        **referenced_ids_projection(references),
        **sprint_fields_projection(sprint_fields),
        **(SEEN_FIELDS if seen is not None else {"_id": 0}),
    }
    statuses: set[str | None] = set()
    users: set[str | None] = set()
    referenced: dict[str, set[str]] = {entity: set() for entity, _ in references}
    sprint_ids: set[str] = set()
    documents = (db["jira_issues"].find(live, projection, batch_size=500) if only is None
                 else live_issues_by_id(db, connection_id, only, projection))
    for doc in documents:
        if people:
            _add_status_and_people(doc, statuses, users)
        add_referenced_ids(doc, references, referenced)
        add_sprint_ids(doc, sprint_fields, sprint_ids)
        if seen is not None:
            seen.add(doc)
    found: dict[str, set[str]] = {}
    if people:
        found["statuses"] = {s for s in statuses if s}
        found["users"] = {u for u in users if u}
    found.update(referenced)
    if sprints:
        found["sprints"] = sprint_ids
    return found


def rows_not_stored(
    db: Database, connection_id: str, referenced: Mapping[str, set[str]]
) -> dict[str, list[str]]:
    """Per entity of `referenced` (in its order), the referenced ids its dimension does not
    store live, sorted."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    missing: dict[str, list[str]] = {}
    if "statuses" in referenced or "users" in referenced:
        missing.update(_statuses_and_users_not_stored(
            db, live, set(referenced.get("statuses", ())), set(referenced.get("users", ()))))
    missing.update(not_stored_live(db, connection_id, {
        entity: ids for entity, ids in referenced.items()
        if entity not in ("statuses", "users", "sprints")}))
    if "sprints" in referenced:
        missing["sprints"] = sprints_not_stored(db, connection_id, referenced["sprints"])
    return {entity: missing[entity] for entity in referenced}


@dataclass(frozen=True)
class RequestTarget:
    """Where a site's refresh runs go: a job of its own, or a shared job narrowed to its assets."""

    issues_job: str
    dimensions_job: str
    narrow: bool = False  # shared jobs: each request selects the site's own assets

    def issues_selection(self, site: JiraSite) -> list[dg.AssetKey] | None:
        # What follows each issue (comments, changelogs,
        # worklogs, history) is re-read with every issue delta.
        names = ("jira_issues", *ISSUE_FOLLOWERS)
        return [site.asset_key(name) for name in names] if self.narrow else None


@dataclass(frozen=True)
class SiteTick:
    """One site's part of a tick, between what the instance said and what Jira will say."""

    site: JiraSite
    cursor: RefreshCursor  # as read, or where a first tick starts
    settled: Settled
    overlap: timedelta
    waiting_for: str | None  # an unfinished refresh run: no look at Jira this tick
    window: IssueWindow
    jql: str


def plan_site_tick(
    instance: dg.DagsterInstance,
    db: Database,
    site: JiraSite,
    cursor: RefreshCursor | None,
    settings: PipelineSettings,
    unfinished: str | None,
    log: Any,
    runs_by_request: Mapping[str, Sequence[dg.DagsterRun]] | None = None,
) -> SiteTick:
    """What the store and the instance decide before Jira is asked (no request is sent)."""
    now = utc_now()
    overlap = settings.consistency_lag
    if cursor is None:
        # First tick: start from what is already stored (or today's start), so a fresh
        # sensor asks for today's delta rather than the whole history.
        stored = stored_newest_updated(db, site.connection_id)
        start = stored or now.replace(hour=0, minute=0, second=0, microsecond=0)
        overlap = overlap if stored else timedelta(0)
        cursor = RefreshCursor(to_epoch_ms(start))
    settled = settle_pending(instance, cursor, runs_by_request)
    if settled.rekey:
        log.warning(
            f"the run requested as {cursor.pending.run_key if cursor.pending else '?'} did "
            "not succeed: requesting its changes again"
        )
    since = from_epoch_ms(settled.acknowledged_ms)
    # Jira Cloud's search is eventually consistent: an update can become visible after newer
    # ones, so every look re-reads `overlap` behind the acknowledged mark.
    window = IssueWindow(since - overlap, now + timedelta(days=1))
    jql = build_issue_jql(window, projects=settings.projects or None, order_by="updated DESC")
    return SiteTick(site, cursor, settled, overlap, settled.in_flight or unfinished, window, jql)


def finish_site_tick(
    db: Database,
    tick: SiteTick,
    seen: list[tuple[str, datetime]] | None,
    partitions: dg.DailyPartitionsDefinition,
    target: RequestTarget,
    log: Any,
) -> tuple[list[dg.RunRequest], RefreshCursor, str]:
    """The runs to request and the site's new cursor, from what Jira showed (`seen`; None when
    Jira was not asked because a refresh run is unfinished)."""
    site, cursor, settled = tick.site, tick.cursor, tick.settled
    run_requests: list[dg.RunRequest] = []
    since = from_epoch_ms(settled.acknowledged_ms)
    new_cursor = RefreshCursor(settled.acknowledged_ms)
    # Never two runs for one change at once: while a refresh run is unfinished its
    # changes (and any newer ones) wait for the tick after it ends.
    skip_reason = f"waiting for refresh run {tick.waiting_for} to finish"
    if tick.waiting_for is not None or seen is None:
        unsettled = settled.in_flight or settled.rekey
        new_cursor = RefreshCursor(settled.acknowledged_ms, cursor.pending if unsettled else None)
    else:
        skip_reason = f"nothing updated in Jira since {since.isoformat()}"
        changed = seen if len(seen) > RECENT_LIMIT else not_stored(db, site.connection_id, seen)
        newest_ms = max((to_epoch_ms(updated) for _, updated in seen), default=None)
        if changed and newest_ms is not None:
            # Past the limit, `seen` is only the newest part: cover the whole window.
            oldest = tick.window.start if len(seen) > RECENT_LIMIT else min(u for _, u in changed)
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
                    job_name=target.issues_job,
                    run_key=run_key,
                    asset_selection=target.issues_selection(site),
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

    missing = missing_dimension_rows(db, site.connection_id)
    for entity, ids in missing.items():
        if not ids:
            continue
        digest = hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]
        log.info(f"{site.name}: {len(ids)} {entity} referenced by issues are not stored")
        run_requests.append(
            dg.RunRequest(
                job_name=target.dimensions_job,
                asset_selection=[site.asset_key(f"jira_{entity}")],
                # The same missing set never triggers twice: if a refresh cannot find them,
                # the asset check reports it instead of the sensor looping.
                run_key=f"dimension:{site.name}:{entity}:{digest}",
                tags=site.run_tags,
            )
        )
    return run_requests, new_cursor, skip_reason


def build_refresh_sensor(
    site: JiraSite,
    jobs: SiteJobs,
    partitions: dg.DailyPartitionsDefinition,
    settings: PipelineSettings,
) -> dg.SensorDefinition:
    target = RequestTarget(jobs.issues.name, jobs.dimensions.name)

    @dg.sensor(
        name=site.object_name("jira_refresh_sensor"),
        jobs=[jobs.issues, jobs.dimensions],
        minimum_interval_seconds=settings.sensor_interval_s,
        required_resource_keys={site.resource_key, "mongo"},
        description="Polls Jira for issues updated since its cursor (re-reading "
        "JIRA_CONSISTENCY_LAG_MINUTES behind it) that MongoDB lacks, and requests a run of their "
        "jira_issues partitions; a change counts as seen only once such a run succeeded (a "
        "failed run's changes are requested again). Requests a dimension refresh when synced "
        "issues reference a row a dimension lacks (a status, user, issue type, priority, "
        "resolution, version, component or sprint).",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def jira_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        db = context.resources.mongo.get_database()
        cursor = RefreshCursor.parse(context.cursor)
        unfinished = unfinished_refresh(context.instance, site.name)
        tick = plan_site_tick(
            context.instance, db, site, cursor, settings, unfinished, context.log
        )
        seen = None
        if tick.waiting_for is None:
            seen = jira.run(lambda client: recent_updates(client, tick.jql))
        run_requests, new_cursor, skip_reason = finish_site_tick(
            db, tick, seen, partitions, target, context.log
        )
        if not run_requests:
            return dg.SensorResult(skip_reason=skip_reason, cursor=new_cursor.dump())
        return dg.SensorResult(run_requests=run_requests, cursor=new_cursor.dump())

    return jira_refresh_sensor


# The combined sensor of the registered sites: how many sites it asks at once, and how much of
# Dagster's 60 s a tick may spend asking (sites not reached wait for the next tick).
SITES_REFRESH_SENSOR = "jira_sites_refresh_sensor"
SITE_FAN_OUT = 16
TICK_BUDGET_S = 40.0
# At most this many sites a tick, whatever the budget leaves (the rotation goes on next tick).
SITES_PER_TICK = 2000
# Before the combined sensor each registered site had a sensor of its own, named so.
_LEGACY_SENSOR_SUFFIX = "_jira_refresh_sensor"


def parse_site_cursors(text: str | None) -> dict[str, RefreshCursor]:
    """The combined sensor's cursor: each site's `RefreshCursor`, by site name."""
    if not text:
        return {}
    try:
        sites = json.loads(text).get("sites")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(sites, dict):
        return {}
    parsed = {name: RefreshCursor.parse(json.dumps(value)) for name, value in sites.items()}
    return {name: cursor for name, cursor in parsed.items() if cursor is not None}


@dataclass(frozen=True)
class Rotation:
    """Where the combined sensor's round of the sites stands, kept in its cursor: the tick
    after `after` (a site name) starts with the sites that ran out of time in the last one
    (`retry`), then the names after `after` in order, wrapping round. So a tick that cannot
    reach every site leaves the rest first in line, and a site registered since goes in the
    round at its name's place."""

    after: str | None = None
    retry: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Rotation:
        try:
            data = json.loads(text) if text else {}
            after, retry = data.get("after"), data.get("retry") or []
        except (ValueError, AttributeError):
            return cls()
        if not (after is None or isinstance(after, str)) or not isinstance(retry, list):
            return cls()
        return cls(after, tuple(name for name in retry if isinstance(name, str)))

    def order(self, names: list[str]) -> list[str]:
        """`names` (sorted) in the order this tick asks them."""
        start = bisect.bisect_right(names, self.after) if self.after is not None else 0
        known = set(names)
        retry = [name for name in self.retry if name in known]
        first = set(retry)
        return retry + [name for name in names[start:] + names[:start] if name not in first]


def dump_site_cursors(cursors: dict[str, RefreshCursor], rotation: Rotation | None = None) -> str:
    data: dict[str, Any] = {"sites": {name: asdict(c) for name, c in sorted(cursors.items())}}
    if rotation is not None:
        data.update(after=rotation.after, retry=list(rotation.retry))
    return json.dumps(data)


def legacy_site_cursors(instance: dg.DagsterInstance, names: set[str]) -> dict[str, RefreshCursor]:
    """Cursors the per-site sensors of an earlier release left in the instance, by site name:
    an upgraded code location carries on from them instead of starting over."""
    from dagster._core.scheduler.instigation import InstigatorType, SensorInstigatorData

    found: dict[str, RefreshCursor] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        name = state.instigator_name
        if not name.endswith(_LEGACY_SENSOR_SUFFIX):
            continue
        site = name[: -len(_LEGACY_SENSOR_SUFFIX)]
        data = state.instigator_data
        if site in names and isinstance(data, SensorInstigatorData):
            cursor = RefreshCursor.parse(data.cursor)
            if cursor is not None:
                found[site] = cursor
    return found


def unfinished_refreshes(instance: dg.DagsterInstance, names: list[str]) -> dict[str, str]:
    """The id of an unfinished refresh run of each site that has one: one query for all."""
    if not names:
        return {}
    runs = instance.get_runs(dg.RunsFilter(tags={REFRESH_TAG: names}, statuses=UNFINISHED))
    found: dict[str, str] = {}
    for run in runs:
        found.setdefault(run.tags.get(REFRESH_TAG, ""), run.run_id)
    return found


def runs_of_requests(
    instance: dg.DagsterInstance, run_keys: list[str], chunk: int = 500
) -> dict[str, list[dg.DagsterRun]]:
    """The runs answering each of `run_keys` (their `jira/refresh_request` tag), newest first:
    a query per `chunk` keys rather than one per site."""
    found: dict[str, list[dg.DagsterRun]] = {key: [] for key in run_keys}
    for start in range(0, len(run_keys), chunk):
        keys = run_keys[start:start + chunk]
        for run in instance.get_runs(dg.RunsFilter(tags={REFRESH_REQUEST_TAG: keys})):
            found.setdefault(run.tags.get(REFRESH_REQUEST_TAG, ""), []).append(run)
    return found


async def look_at_sites(
    looks: list[tuple[str, JiraClient, str]], fan_out: int, budget_s: float
) -> dict[str, list[tuple[str, datetime]] | BaseException]:
    """Ask each site's Jira what changed, `fan_out` sites at a time; a site's failure (or the
    budget running out before its turn) is its answer, never the others'."""
    gate = asyncio.Semaphore(fan_out)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s

    async def look(name: str, client: JiraClient, jql: str
                   ) -> tuple[str, list[tuple[str, datetime]] | BaseException]:
        async with gate:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return name, TimeoutError("the tick's time ran out before this site's turn")
            try:
                return name, await asyncio.wait_for(recent_updates(client, jql), remaining)
            except TimeoutError:
                return name, TimeoutError("the tick's time ran out while asking this site")
            except Exception as error:  # one site's problem, logged by the caller
                return name, error

    return dict(await asyncio.gather(*(look(*args) for args in looks)))


class SiteClients:
    """Each registered site's Jira client, built on first use and kept from tick to tick in
    the code server: building one (Dagster's resource set-up, the stored token's decryption)
    costs far more CPU than the request it sends. A site's client is dropped when it fails,
    so the next tick builds it again from what is stored then."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[ExitStack, JiraClient]] = {}
        self._lock = threading.Lock()

    def get(self, site: JiraSite, instance: dg.DagsterInstance) -> JiraClient:
        with self._lock:
            if site.name not in self._open:
                stack = ExitStack()
                try:
                    self._open[site.name] = (stack, self._client(site, instance, stack))
                except BaseException:
                    stack.close()
                    raise
            return self._open[site.name][1]

    @staticmethod
    def _client(site: JiraSite, instance: dg.DagsterInstance, stack: ExitStack) -> JiraClient:
        if site.open_client is not None:
            opened = site.open_client()
            stack.callback(lambda: run_sync(opened.aclose()))
            return opened
        resource = site.build_resource() if site.build_resource is not None \
            else site.jira_resource
        if any(isinstance(value, dg.EnvVar) for value in resource.__dict__.values()):
            # Only Dagster's resource set-up reads a `dg.EnvVar` field (OAuth's client id and
            # secret). Given the instance: without one, build_resources makes an ephemeral
            # instance each call (two thirds of a 30-site tick).
            built = stack.enter_context(dg.build_resources({"jira": resource}, instance=instance))
            return built.jira.get_client()
        # A resource of its own, used as a plain object: the set-up would copy its `mongo` and
        # open the store again (and ensure its indexes) for each site, 80% of a first tick.
        client = resource.get_client()
        stack.callback(lambda: run_sync(client.aclose()))
        return client

    def drop(self, name: str) -> None:
        with self._lock:
            opened = self._open.pop(name, None)
        if opened is not None:
            opened[0].close()  # the resource's teardown closes the client


def skip_summary(reasons: list[str], failed: dict[str, BaseException]) -> str:
    """A quiet tick's message: the first sites' reasons, and which sites failed."""
    text = "; ".join(reasons[:5]) or "no site asked"
    if len(reasons) > 5:
        text += f"; and {len(reasons) - 5} more"
    if failed:
        text += f"; {len(failed)} site(s) failed: {', '.join(sorted(failed))}"
    return text


def build_sites_refresh_sensor(
    sites: list[JiraSite],
    job: dg.UnresolvedAssetJobDefinition,
    partitions: dg.DailyPartitionsDefinition,
    settings: PipelineSettings,
) -> dg.SensorDefinition:
    """One sensor for every registered site: a tick asks all of them concurrently (bounded)."""
    target = RequestTarget(job.name, job.name, narrow=True)
    by_name = {site.name: site for site in sites}
    names = sorted(by_name)
    clients = SiteClients()

    @dg.sensor(
        name=SITES_REFRESH_SENSOR,
        jobs=[job],
        minimum_interval_seconds=settings.sensor_interval_s,
        required_resource_keys={"mongo"},
        description="jira_refresh_sensor for every site registered in jira_connections, in one "
        f"tick: asks up to {SITE_FAN_OUT} sites' Jira at once and keeps a cursor per site. A "
        "site that fails (401, Jira down) is logged and skipped, its cursor untouched; sites a "
        "tick has no time for go first on the next (the cursor keeps the round's place).",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def jira_sites_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        db = context.resources.mongo.get_database()
        cursors = parse_site_cursors(context.cursor)
        rotation = Rotation.parse(context.cursor)
        unknown = set(by_name) - set(cursors)
        if unknown:
            cursors.update(legacy_site_cursors(context.instance, unknown))
        unfinished = unfinished_refreshes(context.instance, names)
        pending_runs = runs_of_requests(context.instance, sorted(
            cursor.pending.run_key for name, cursor in cursors.items()
            if cursor.pending is not None and name in by_name
        ))
        started = time.monotonic()
        failed: dict[str, BaseException] = {}
        ticks: list[SiteTick] = []
        looks: list[tuple[str, JiraClient, str]] = []
        order = rotation.order(names)
        reached: list[str] = []  # in the round's order: where the next tick goes on from
        for name in order:
            if len(reached) >= SITES_PER_TICK or time.monotonic() - started > TICK_BUDGET_S / 2:
                break
            reached.append(name)
            site = by_name[name]
            try:
                tick = plan_site_tick(context.instance, db, site, cursors.get(site.name),
                                      settings, unfinished.get(site.name), context.log,
                                      pending_runs)
                if tick.waiting_for is None:
                    # Built on this thread (stored tokens are read here), kept across ticks.
                    looks.append((site.name, clients.get(site, context.instance), tick.jql))
                ticks.append(tick)
            except Exception as error:  # a connection without a usable token, say
                failed[site.name] = error
        left = order[len(reached):]
        answers: dict[str, list[tuple[str, datetime]] | BaseException] = {}
        if looks:
            budget = max(TICK_BUDGET_S - (time.monotonic() - started), 1.0)
            answers = run_sync(look_at_sites(looks, SITE_FAN_OUT, budget))
        run_requests: list[dg.RunRequest] = []
        new_cursors: dict[str, RefreshCursor] = {}
        reasons: list[str] = []
        for tick in ticks:
            name = tick.site.name
            answer = answers.get(name)
            if isinstance(answer, BaseException):
                failed[name] = answer
                answer = None
            if name in failed:
                continue
            seen = None if tick.waiting_for is not None else answer
            try:
                requests, new_cursors[name], reason = finish_site_tick(
                    db, tick, seen, partitions, target, context.log
                )
            except Exception as error:  # this site's store reads: the others go on
                failed[name] = error
                continue
            run_requests.extend(requests)
            if not requests:
                reasons.append(f"{name}: {reason}")
        # Sites failed, timed out or not reached keep their cursors as they were: the next
        # tick asks again from the same mark.
        for name, kept in cursors.items():
            if name in by_name:  # a site no longer registered leaves the cursor
                new_cursors.setdefault(name, kept)
        timed_out = sorted(name for name, problem in failed.items()
                           if isinstance(problem, TimeoutError))
        for name, problem in failed.items():
            if not isinstance(problem, TimeoutError):
                clients.drop(name)  # built anew next tick: a rotated token, a fixed URL
        for name, problem in sorted(failed.items()):
            if name not in timed_out:
                context.log.warning(
                    f"site {name} skipped this tick: {type(problem).__name__}: {problem}"
                )
        behind = timed_out + left
        if behind:
            context.log.warning(
                f"{len(behind)} of {len(names)} site(s) not reached in this tick's "
                f"{TICK_BUDGET_S:.0f} s: they go first on the next ({', '.join(behind[:5])}"
                f"{', ...' if len(behind) > 5 else ''})"
            )
        # The next tick starts with the timed-out sites, then after the last one reached.
        next_rotation = Rotation(reached[-1] if reached else rotation.after, tuple(timed_out))
        cursor = dump_site_cursors(new_cursors, next_rotation)
        if not run_requests:
            summary = skip_summary(reasons, failed)
            if left:
                summary += f"; {len(left)} site(s) left for the next tick: {', '.join(left[:5])}"
            return dg.SensorResult(skip_reason=summary, cursor=cursor)
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)

    return jira_sites_refresh_sensor
