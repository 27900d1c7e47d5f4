"""Asset checks: stored issues match Jira, keys are unique, references resolve, data is fresh."""

import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.partitions import PARTITION_KEY_FORMAT
from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.assets.sensors import (
    newest_updated,
    referenced_rows,
    rows_not_stored,
    stored_newest_updated,
)
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.jira import ClientCounters, IssueWindow, JiraClient, build_issue_jql
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.check_memo import (
    IN_CHUNK,
    SEEN_FIELDS,
    Seen,
    changed_since,
    live_issues_by_id,
    memo_since,
    read_memo,
    write_memo,
)
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.issue_references import ISSUE_PROJECT_PARTS, ISSUE_REFERENCE_DATA
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sprint_references import sprints_not_stored
from jira_pipeline.storage.sync_errors import dead_lettered_ids, sync_errors
from jira_pipeline.timeutil import parse_jira_datetime, utc_now

SAMPLE = 10  # ids shown in check metadata
NO_DUPLICATE_KEYS = "no_duplicate_keys"


def duplicate_keys(db: Database, collection: str, connection_id: str, field: str) -> list[str]:
    """Values of `field` held by more than one live document of the connection."""
    return duplicate_values(db, collection, connection_id, (field,))[field]


def duplicate_values(
    db: Database, collection: str, connection_id: str, fields: tuple[str, ...],
    seen: Seen | None = None,
) -> dict[str, list[str]]:
    """For each of `fields`, the values held by more than one live document of the connection,
    from one pass over the documents (a pass per field read the collection again for each);
    with `seen`, what the pass read of each document for a check's memo."""
    # A projected scan counted here rather than a $group: the embedded store would otherwise
    # hold every whole document (raw JSON included) in memory at once.
    counts: dict[str, Counter[Any]] = {name: Counter() for name in fields}
    projection = {**dict.fromkeys(fields, 1), **(SEEN_FIELDS if seen is not None else {"_id": 0})}
    for doc in db[collection].find(
        {"connection_id": connection_id, "is_deleted": {"$ne": True}}, projection
    ):
        for name, held in counts.items():
            held[doc.get(name)] += 1
        if seen is not None:
            seen.add(doc)
    return {
        name: sorted(str(value) for value, n in seen.items() if n > 1)
        for name, seen in counts.items()
    }


def duplicate_issue_values(db: Database, connection_id: str) -> tuple[dict[str, list[str]], str]:
    """`duplicate_values` of the live issues' ids and keys, and what was read: every live
    issue, or (with a memo of the last evaluation, few issues changed since) the issues changed
    since and the values that were duplicated then. Exact either way: two issues that share a
    value now both held it at the last evaluation unless one changed since (a tombstone only
    ever removes a duplicate)."""
    fields = ("issue_id", "key")
    read_at = utc_now()
    seen = Seen(memo_since(read_at))
    memo = read_memo(db, connection_id, NO_DUPLICATE_KEYS)
    ids = changed_since(db, connection_id, [memo], seen) if memo is not None else None
    if memo is None or ids is None:
        seen = Seen(memo_since(read_at))
        duplicates = duplicate_values(db, "jira_issues", connection_id, fields, seen)
        read = "every live issue"
    else:
        candidates = {name: set(memo.values.get(name, ())) for name in fields}
        # What the memo remembers of an issue read again is what this read sees of it.
        seen.forget(ids)
        for doc in live_issues_by_id(db, connection_id, ids,
                                     {**dict.fromkeys(fields, 1), **SEEN_FIELDS}):
            seen.add(doc)
            for name in fields:
                if doc.get(name) is not None:
                    candidates[name].add(str(doc[name]))
        duplicates = {name: _duplicated_among(db, connection_id, name, candidates[name])
                      for name in fields}
        read = (f"{len(ids)} issue(s) changed since {memo.written_since.isoformat()} and "
                f"{sum(map(len, memo.values.values()))} value(s) duplicated then")
    write_memo(db, connection_id, NO_DUPLICATE_KEYS, read_at, duplicates, seen)
    return duplicates, read


def _duplicated_among(db: Database, connection_id: str, field: str, values: set[str]) -> list[str]:
    """Of `values`, those more than one live issue holds in `field` (indexed), by chunks."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    counts: Counter[str] = Counter()
    ordered = sorted(values)
    for start in range(0, len(ordered), IN_CHUNK):
        chunk = ordered[start : start + IN_CHUNK]
        for doc in db["jira_issues"].find({**live, field: {"$in": chunk}}, {field: 1, "_id": 0}):
            counts[str(doc.get(field))] += 1
    return sorted(value for value, n in counts.items() if n > 1)


# The checks evaluated in the `jira_issues` step, right after the IO manager has written the
# step's issues (`check_specs` on the asset): they read what the step just wrote, so running them
# there costs no step of their own. Two steps stay checks of their own (`build_issue_checks`):
# - `fresh` asks Jira for the site's newest `updated` (a request, not a read of the step's
#   writes), judges the site as it is now rather than the partitions a run wrote, and is worth
#   running alone, between syncs;
# - `references_present` and its two siblings judge the issues against the dimensions, which
#   the dimensions step writes after the issues step (users fetches the people issues reference
#   that its listing leaves out): evaluated in the issues step they would see the rows before
#   their refresh.
ISSUE_STEP_CHECKS = ("matches_jira_count", "no_duplicate_keys", "no_sync_errors")
MATCHES_JIRA_COUNT_DESCRIPTION = (
    "For each partition checked, every issue Jira has in the window (same JQL, no lookback) is "
    "stored. Issues updated in Jira after the run started are left to the next run; issues "
    "stored for the window but since updated later are reported, not failed: their new "
    "partition will hold them. Evaluated per partition, also in a run of several partitions."
)


def missing_references_since_memo(
    db: Database, connection_id: str, groups: Mapping[str, tuple[str, ...]], *, people: bool,
    references: tuple[tuple[str, str], ...],
) -> tuple[dict[str, list[str]], str]:
    """`missing_dimension_rows` of the entities of `groups` (per check, the entities it
    judges), and what was read: every live issue, or only the issues changed since the checks'
    last evaluation when each check has a memo of it, few issues changed since, and every
    id the issues referenced then is still stored live (an issue not changed since references
    only ids of its check's memo, so none of it can be missing). Each check's memo is then the
    ids referenced then and now: a superset of what the issues reference, until an id of it
    loses its row and a pass over every issue starts the memo again."""
    read_at = utc_now()
    memos = {name: memo for name in groups
             if (memo := read_memo(db, connection_id, name)) is not None}
    remembered: dict[str, set[str]] = {}
    seen = Seen(memo_since(read_at))
    changed: list[Any] | None = None
    if groups and len(memos) == len(groups):
        for name, memo in memos.items():
            for entity in groups[name]:
                remembered.setdefault(entity, set()).update(memo.values.get(entity, ()))
        if not any(rows_not_stored(db, connection_id, remembered).values()):
            changed = changed_since(db, connection_id, list(memos.values()), seen)
    if changed is None:
        seen = Seen(memo_since(read_at))
        referenced = referenced_rows(db, connection_id, people=people, references=references,
                                     sprints=False, seen=seen)
    else:
        # What the memos remember of an issue read again is what this read sees of it.
        seen.forget(changed)
        referenced = referenced_rows(db, connection_id, people=people, references=references,
                                     sprints=False, only=changed, seen=seen)
    missing = rows_not_stored(db, connection_id, referenced)
    if changed is not None:
        for entity, remembered_ids in remembered.items():
            referenced.setdefault(entity, set()).update(remembered_ids)
    for name, entities in groups.items():
        write_memo(db, connection_id, name, read_at,
                   {entity: referenced.get(entity, set()) for entity in entities}, seen)
    since = min((memo.written_since for memo in memos.values()), default=None)
    read = ("every live issue" if changed is None or since is None
            else f"{len(changed)} issue(s) changed since {since.isoformat()}")
    return missing, read


def issue_check_specs(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """The `jira_issues` checks its own step evaluates (see `issue_check_results`)."""
    issues_key = site.asset_key("jira_issues")
    with warnings.catch_warnings():
        # Partitioned checks are a Dagster "preview" feature; the warning would greet every
        # code-location load. The check is the point of the partitions, so we accept it.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        matches_jira_count = dg.AssetCheckSpec(
            "matches_jira_count", asset=issues_key, description=MATCHES_JIRA_COUNT_DESCRIPTION,
            blocking=True, partitions_def=partitions,
        )
    return [
        matches_jira_count,
        dg.AssetCheckSpec(
            "no_duplicate_keys", asset=issues_key,
            description="No Jira issue id or issue key is held by two live documents.",
        ),
        dg.AssetCheckSpec(
            "no_sync_errors", asset=issues_key,
            description="jira_sync_errors holds no record of this connection that a sync could "
            "not store (each dead letter names the entity, the key and the reason).",
        ),
    ]


def selected_checks(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, asset_key: dg.AssetKey
) -> set[str]:
    """Names of the checks of `asset_key` this step is asked to evaluate (a UI selection may
    leave some or all out, or select them without the asset)."""
    return {key.name for key in context.selected_asset_check_keys if key.asset_key == asset_key}


def issue_check_results(
    context: dg.AssetExecutionContext,
    jira: JiraResource,
    db: Database,
    site: JiraSite,
    settings: PipelineSettings,
    partitions: dg.DailyPartitionsDefinition,
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """The selected `jira_issues` checks, evaluated on what the store holds now."""
    issues_key = site.asset_key("jira_issues")
    selected = selected_checks(context, issues_key)
    if "matches_jira_count" in selected:
        yield from matches_jira_count(context, jira, db, site, settings, partitions)
    if NO_DUPLICATE_KEYS in selected:
        duplicates, read = duplicate_issue_values(db, site.connection_id)
        by_id, by_key = duplicates["issue_id"], duplicates["key"]
        yield dg.AssetCheckResult(
            asset_key=issues_key,
            check_name="no_duplicate_keys",
            passed=not by_id and not by_key,
            metadata={
                "duplicate_issue_ids": len(by_id),
                "duplicate_keys": len(by_key),
                "sample": ", ".join([*by_id, *by_key][:SAMPLE]),
                "read": read,
            },
        )
    if "no_sync_errors" in selected:
        yield sync_errors_result(db, site)


def build_issue_checks(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> list[dg.AssetChecksDefinition]:
    """The `jira_issues` checks that run in steps of their own: `fresh`, and the checks of what
    the issues reference (`references_present`, `reference_data_present`,
    `project_parts_present`), which follow the dimensions (the others are `check_specs` of the
    asset, see `issue_check_specs`)."""
    issues_key = site.asset_key("jira_issues")
    # The three checks read the ids the issues name: one step, one projected pass over the
    # issues for them all (a pass of its own each cost about a second a run per 5,000 issues
    # on the embedded store), each check evaluated only when selected. Per check: the
    # dimension entities it judges, from the pass's groups, and its description.
    referenced_checks: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]] = {
        "references_present": (
            ("statuses", "users"), (),
            "Every status and user (assignee, reporter) that a live issue references is "
            "stored; the refresh sensor requests a dimension refresh when one is not.",
        ),
        "reference_data_present": (
            tuple(dict.fromkeys(entity for entity, _ in ISSUE_REFERENCE_DATA)),
            ISSUE_REFERENCE_DATA,
            "Every issue type, priority and resolution that a live issue references (by id, "
            "in its raw fields) is stored live in jira_issue_types, jira_priorities and "
            "jira_resolutions.",
        ),
        "project_parts_present": (
            tuple(dict.fromkeys(entity for entity, _ in ISSUE_PROJECT_PARTS)),
            ISSUE_PROJECT_PARTS,
            "Every version (fixVersions, versions) and component that a live issue "
            "references (by id, in its raw fields) is stored live in jira_project_versions "
            "and jira_project_components.",
        ),
    }

    @dg.multi_asset_check(
        name=site.object_name("jira_issues_referenced_rows_present"),
        specs=[
            dg.AssetCheckSpec(
                name, asset=issues_key, description=description,
                additional_deps=[site.asset_key(f"jira_{entity}") for entity in entities],
            )
            for name, (entities, _, description) in referenced_checks.items()
        ],
        can_subset=True,
    )
    def referenced_rows_present(
        context: dg.AssetCheckExecutionContext, mongo: MongoResource
    ) -> Iterator[dg.AssetCheckResult]:
        chosen = selected_checks(context, issues_key)
        selected = [name for name in referenced_checks if name in chosen]
        groups = {name: referenced_checks[name][0] for name in selected}
        references = tuple(reference for name in selected
                           for reference in referenced_checks[name][1])
        missing, read = missing_references_since_memo(
            mongo.get_database(), site.connection_id, groups,
            people="references_present" in selected, references=references)
        for name in selected:
            found = {entity: missing[entity] for entity in referenced_checks[name][0]}
            yield dg.AssetCheckResult(
                asset_key=issues_key,
                check_name=name,
                passed=not any(found.values()),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    **{f"missing_{entity}": len(ids) for entity, ids in found.items()},
                    "sample": ", ".join(
                        f"{entity}/{row_id}" for entity, ids in found.items() for row_id in ids
                    )[:500],
                    "read": read,
                },
            )

    @dg.asset_check(
        asset=site.asset_key("jira_issues"),
        name="fresh",
        description="The newest stored `updated` is within JIRA_FRESHNESS_TOLERANCE_MINUTES of "
        "the newest `updated` in Jira.",
    )
    @with_site_resource(site)
    def fresh(
        context: dg.AssetCheckExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> dg.AssetCheckResult:
        db: Database = mongo.get_database()
        first = partitions.time_window_for_partition_key(partitions.get_first_partition_key())
        window = IssueWindow(first.start, utc_now() + timedelta(days=1))
        jql = build_issue_jql(window, projects=settings.projects or None, order_by="updated DESC")
        before = jira.counters()
        in_jira = jira.run(lambda client: newest_updated(client, jql))
        spent = jira_spent(jira, before)
        stored = stored_newest_updated(db, site.connection_id)
        if in_jira is None:
            return dg.AssetCheckResult(passed=True,
                                       metadata={"jira_newest": "no issues", **spent})
        lag = (in_jira - stored) if stored else None
        passed = lag is not None and lag <= settings.freshness_tolerance
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "jira_newest_updated": in_jira.isoformat(),
                "stored_newest_updated": stored.isoformat() if stored else "nothing stored",
                "lag_minutes": round(lag.total_seconds() / 60, 1) if lag is not None else -1,
                **spent,
            },
        )

    return [referenced_rows_present, fresh]


def matches_jira_count(
    context: dg.AssetExecutionContext,
    jira: JiraResource,
    db: Database,
    site: JiraSite,
    settings: PipelineSettings,
    partitions: dg.DailyPartitionsDefinition,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    asset_key = site.asset_key("jira_issues")
    keys = list(context.partition_keys)
    window = context.partition_time_window
    # Judge the run, not the moment: an issue edited after the run started (between the
    # walk and this check, on a busy site most runs) is the next run's to fetch.
    end = min(window.end, run_started(context.instance, context.run.run_id))
    before = jira.counters()
    evaluations = (
        count_by_partition(jira, db, site, settings, partitions, keys,
                           IssueWindow(window.start, end))
        if end > window.start
        else {key: PartitionCount() for key in keys}
    )
    spent = jira_spent(jira, before)  # the whole step's count, in every partition's figures
    for key in keys:
        found = evaluations[key]
        # Dagster ties an AssetCheckResult to a partition only in a one-partition step
        # (otherwise the UI shows each partition's check as skipped): one evaluation per
        # partition, each carrying that partition's figures.
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key,
            check_name="matches_jira_count",
            passed=not found.missing,
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=True,
            partition=key,
            description=(
                f"{len(found.missing)} issue(s) in Jira are missing from MongoDB"
                if found.missing else "every issue Jira has in this window is stored"
            ),
            metadata={
                "jira_count": found.jira_count,
                "stored_count": found.stored_count,
                "missing": len(found.missing),
                "missing_sample": ", ".join(sorted(found.missing)[:SAMPLE]),
                "stored_but_updated_later": found.moved_on,
                "judged_until": end.isoformat(),
                **spent,
            },
        )
    check_key = dg.AssetCheckKey(asset_key, "matches_jira_count")
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(
        check_key))


def jira_spent(jira: JiraResource, before: ClientCounters) -> dict[str, int]:
    """What a check's requests cost (the run shares one client): requests and retries."""
    spent = counter_delta(before, jira.counters())
    return {"api_calls": int(spent["api_calls"]), "retries": int(spent["retries"])}


@dataclass
class PartitionCount:
    """One partition's side of the count check."""

    jira_count: int = 0
    stored_count: int = 0
    missing: list[str] = field(default_factory=list)
    moved_on: int = 0


def run_started(instance: dg.DagsterInstance, run_id: str) -> datetime:
    record = instance.get_run_record_by_id(run_id)
    moment = (record.start_time or record.create_timestamp.timestamp()) if record else None
    return datetime.fromtimestamp(moment, UTC) if moment else utc_now()


def count_by_partition(
    jira: JiraResource,
    db: Database,
    site: JiraSite,
    settings: PipelineSettings,
    partitions: dg.DailyPartitionsDefinition,
    keys: list[str],
    window: IssueWindow,
) -> dict[str, PartitionCount]:
    """Jira's ids in `window` against the stored ones, attributed to the run's partitions.

    One `fields=id` walk for the whole range (5,000 ids a request); only the few ids MongoDB
    lacks are looked up again for their `updated`, to say which partition misses them.
    """
    projects = settings.projects or None
    jql = build_issue_jql(window, projects=projects)
    in_jira = set(jira.iterate(lambda client: client.issue_ids(jql), max_buffered=5000))
    selector: dict[str, Any] = {
        "connection_id": site.connection_id,
        "is_deleted": {"$ne": True},
        "updated": {"$gte": window.start, "$lt": window.end},
    }
    if settings.projects:
        selector["project_key"] = {"$in": list(settings.projects)}
    counts = {key: PartitionCount() for key in keys}

    def bucket(moment: datetime | None) -> PartitionCount:
        # The UTC day's key, clamped to the run's keys (as `partition_key_for`, whose clamp to
        # the first partition asks Dagster to walk the partitions: per issue, most of the check).
        key = moment.astimezone(UTC).strftime(PARTITION_KEY_FORMAT) if moment else keys[-1]
        return counts[min(max(key, keys[0]), keys[-1])]

    stored: set[str] = set()
    for doc in db["jira_issues"].find(selector, {"issue_id": 1, "updated": 1, "_id": 0}):
        issue_id = str(doc.get("issue_id"))
        stored.add(issue_id)
        count = bucket(parse_jira_datetime(doc.get("updated")))
        count.stored_count += 1
        if issue_id in in_jira:
            count.jira_count += 1
        else:
            count.moved_on += 1
    # Issues Jira sent that cannot be stored are in jira_sync_errors (no_sync_errors warns).
    unstorable = dead_lettered_ids(db, site.connection_id, "issues", in_jira - stored)
    missing = sorted(in_jira - stored - unstorable)
    for start in range(0, len(missing), 100):
        ids = missing[start:start + 100]
        found_jql = build_issue_jql(window, projects=projects, user_jql=f"id in ({','.join(ids)})")
        for issue in jira.iterate(_updated_of(found_jql)):
            count = bucket(parse_jira_datetime((issue.get("fields") or {}).get("updated")))
            count.jira_count += 1
            count.missing.append(str(issue["id"]))
    return counts


def _updated_of(jql: str) -> Callable[[JiraClient], AsyncIterator[dict[str, Any]]]:
    return lambda client: client.search_issues(jql, fields=("updated",))


def dimension_check_specs(site: JiraSite, asset_name: str) -> list[dg.AssetCheckSpec]:
    """A dimension's checks, evaluated in the dimensions' step once its rows are written."""
    spec = entity_spec(asset_name)
    key = site.asset_key(asset_name)
    return [
        dg.AssetCheckSpec("not_empty", asset=key,
                          description=f"At least one live {_singular(spec.name)} is stored."),
        dg.AssetCheckSpec("no_duplicate_keys", asset=key,
                          description=f"No {spec.id_field} is held by two live documents."),
        *EXTRA_DIMENSION_CHECKS.get(asset_name, lambda key: [])(key),
    ]


SPRINTS_CHECK = "referenced_sprints_stored"
# Checks of one dimension beyond not_empty and no_duplicate_keys, evaluated in the same step.
EXTRA_DIMENSION_CHECKS: dict[str, Callable[[dg.AssetKey], list[dg.AssetCheckSpec]]] = {
    "jira_sprints": lambda key: [dg.AssetCheckSpec(
        SPRINTS_CHECK, asset=key,
        description="Every sprint a live issue's sprint field holds (the field jira_fields "
        "names com.pyxis.greenhopper.jira:gh-sprint; Cloud objects and Data Center strings) is "
        "stored live in jira_sprints.")],
}


def _singular(entity: str) -> str:
    """ "priorities" -> "priority", "issue_types" -> "issue type"."""
    one = entity[:-3] + "y" if entity.endswith("ies") else entity[:-1]
    return one.replace("_", " ")


def dimension_check_results(
    context: dg.AssetExecutionContext, db: Database, site: JiraSite, asset_name: str,
    referenced: Callable[[Database, str, str], set[str]],
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of one dimension, once its output is written; `referenced` gives
    the ids issues reference of a group (the step's one pass, `StepListings.referenced`)."""
    spec = entity_spec(asset_name)
    key = site.asset_key(asset_name)
    selected = selected_checks(context, key)
    if "not_empty" in selected:
        count = db[spec.collection].count_documents(
            {"connection_id": site.connection_id, "is_deleted": {"$ne": True}}
        )
        yield dg.AssetCheckResult(asset_key=key, check_name="not_empty", passed=count > 0,
                                  metadata={"live_rows": count})
    if "no_duplicate_keys" in selected:
        duplicates = duplicate_keys(db, spec.collection, site.connection_id, spec.id_field)
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="no_duplicate_keys",
            passed=not duplicates,
            metadata={"duplicates": len(duplicates), "sample": ", ".join(duplicates[:SAMPLE])},
        )
    if SPRINTS_CHECK in selected:
        missing = sprints_not_stored(
            db, site.connection_id, referenced(db, site.connection_id, "sprints"))
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=SPRINTS_CHECK,
            passed=not missing,
            metadata={"missing_sprints": len(missing), "sample": ", ".join(missing[:SAMPLE])},
        )


def sync_errors_result(db: Database, site: JiraSite) -> dg.AssetCheckResult:
    """`no_sync_errors`: warns while `jira_sync_errors` holds dead letters of the connection
    (records Jira sent that could not be stored); a later run that stores the record clears its
    dead letter."""
    count, newest = sync_errors(db, site.connection_id, limit=SAMPLE)
    return dg.AssetCheckResult(
        asset_key=site.asset_key("jira_issues"),
        check_name="no_sync_errors",
        passed=count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{count} record(s) could not be stored; see jira_sync_errors" if count
            else "every record Jira sent was stored"
        ),
        metadata={
            "sync_errors": count,
            "sample": dg.MetadataValue.md(
                "\n".join(f"- {error.describe()}" for error in newest) or "_none_"
            ),
        },
    )
