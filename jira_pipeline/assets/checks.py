"""Asset checks: stored issues match Jira, keys are unique, references resolve, data is fresh."""

import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.jobs import DIMENSION_ASSETS
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.sensors import missing_references, newest_updated, stored_newest_updated
from jira_pipeline.assets.settings import PipelineSettings
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.jira import IssueWindow, build_issue_jql
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.sync_errors import dead_lettered_ids, sync_errors
from jira_pipeline.timeutil import utc_now

SAMPLE = 10  # ids shown in check metadata


def duplicate_keys(db: Database, collection: str, connection_id: str, field: str) -> list[str]:
    """Values of `field` held by more than one live document of the connection."""
    # A projected scan counted here rather than a $group: the embedded store would otherwise
    # hold every whole document (raw JSON included) in memory at once.
    counts = Counter(
        doc.get(field)
        for doc in db[collection].find(
            {"connection_id": connection_id, "is_deleted": {"$ne": True}}, {field: 1, "_id": 0}
        )
    )
    return sorted(str(value) for value, n in counts.items() if n > 1)


def build_issue_checks(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> list[dg.AssetChecksDefinition]:
    issues_key = site.asset_key("jira_issues")
    resources = {site.resource_key, "mongo"}
    with warnings.catch_warnings():
        # Partitioned checks are a Dagster "preview" feature; the warning would greet every
        # code-location load. The check is the point of the partitions, so we accept it.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        matches_jira_count = _build_matches_jira_count(site, partitions, settings)

    @dg.asset_check(
        asset=issues_key,
        name="no_duplicate_keys",
        description="No Jira issue id or issue key is held by two live documents.",
        required_resource_keys={"mongo"},
    )
    def no_duplicate_issue_keys(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        db: Database = context.resources.mongo.get_database()
        by_id = duplicate_keys(db, "jira_issues", site.connection_id, "issue_id")
        by_key = duplicate_keys(db, "jira_issues", site.connection_id, "key")
        return dg.AssetCheckResult(
            passed=not by_id and not by_key,
            metadata={
                "duplicate_issue_ids": len(by_id),
                "duplicate_keys": len(by_key),
                "sample": ", ".join([*by_id, *by_key][:SAMPLE]),
            },
        )

    @dg.asset_check(
        asset=issues_key,
        name="references_present",
        description="Every status and user (assignee, reporter) that a live issue references is "
        "stored; the refresh sensor requests a dimension refresh when one is not.",
        required_resource_keys={"mongo"},
        additional_deps=[site.asset_key("jira_statuses"), site.asset_key("jira_users")],
    )
    def references_present(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        missing = missing_references(context.resources.mongo.get_database(), site.connection_id)
        return dg.AssetCheckResult(
            passed=not any(missing.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_statuses": len(missing["statuses"]),
                "missing_users": len(missing["users"]),
                "sample": ", ".join([*missing["statuses"], *missing["users"]][:SAMPLE]),
            },
        )

    @dg.asset_check(
        asset=issues_key,
        name="fresh",
        description="The newest stored `updated` is within JIRA_FRESHNESS_TOLERANCE_MINUTES of "
        "the newest `updated` in Jira.",
        required_resource_keys=resources,
    )
    def fresh(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        db: Database = context.resources.mongo.get_database()
        first = partitions.time_window_for_partition_key(partitions.get_first_partition_key())
        window = IssueWindow(first.start, utc_now() + timedelta(days=1))
        jql = build_issue_jql(window, projects=settings.projects or None, order_by="updated DESC")
        in_jira = jira.run(lambda client: newest_updated(client, jql))
        stored = stored_newest_updated(db, site.connection_id)
        if in_jira is None:
            return dg.AssetCheckResult(passed=True, metadata={"jira_newest": "no issues"})
        lag = (in_jira - stored) if stored else None
        passed = lag is not None and lag <= settings.freshness_tolerance
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "jira_newest_updated": in_jira.isoformat(),
                "stored_newest_updated": stored.isoformat() if stored else "nothing stored",
                "lag_minutes": round(lag.total_seconds() / 60, 1) if lag is not None else -1,
            },
        )

    return [matches_jira_count, no_duplicate_issue_keys, references_present, fresh]


def _build_matches_jira_count(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=site.asset_key("jira_issues"),
        name="matches_jira_count",
        description="For each partition checked, every issue Jira has in the window (same JQL, "
        "no lookback) is stored. Issues stored for the window but since updated later are "
        "reported, not failed: their new partition will hold them.",
        partitions_def=partitions,
        required_resource_keys={site.resource_key, "mongo"},
        blocking=True,
    )
    def matches_jira_count(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        db: Database = context.resources.mongo.get_database()
        window = context.partition_time_window
        jql = build_issue_jql(
            IssueWindow(window.start, window.end), projects=settings.projects or None
        )
        in_jira = set(jira.iterate(lambda client: client.issue_ids(jql), max_buffered=5000))
        stored = {
            doc.get("issue_id")
            for doc in db["jira_issues"].find(
                {
                    "connection_id": site.connection_id,
                    "is_deleted": {"$ne": True},
                    "updated": {"$gte": window.start, "$lt": window.end},
                    **(
                        {"project_key": {"$in": list(settings.projects)}}
                        if settings.projects
                        else {}
                    ),
                },
                {"issue_id": 1, "_id": 0},
            )
        }
        # Issues Jira sent that cannot be stored are in jira_sync_errors (no_sync_errors warns).
        unstorable = dead_lettered_ids(db, site.connection_id, "issues", in_jira - stored)
        missing = sorted(in_jira - stored - unstorable)
        moved_on = sorted(stored - in_jira)
        return dg.AssetCheckResult(
            passed=not missing,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(missing)} issue(s) in Jira are missing from MongoDB" if missing
                else "every issue Jira has in this window is stored"
            ),
            metadata={
                "jira_count": len(in_jira),
                "stored_count": len(stored),
                "missing": len(missing),
                "missing_sample": ", ".join(missing[:SAMPLE]),
                "stored_but_updated_later": len(moved_on),
            },
        )

    return matches_jira_count


def build_dimension_checks(site: JiraSite) -> list[dg.AssetChecksDefinition]:
    return [check for name in DIMENSION_ASSETS for check in _dimension_checks(site, name)]


def _dimension_checks(site: JiraSite, asset_name: str) -> Sequence[dg.AssetChecksDefinition]:
    spec = entity_spec(asset_name)

    @dg.asset_check(
        asset=site.asset_key(asset_name),
        name="not_empty",
        description=f"At least one live {spec.name[:-1]} is stored.",
        required_resource_keys={"mongo"},
    )
    def not_empty(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        count = context.resources.mongo.get_database()[spec.collection].count_documents(
            {"connection_id": site.connection_id, "is_deleted": {"$ne": True}}
        )
        return dg.AssetCheckResult(passed=count > 0, metadata={"live_rows": count})

    @dg.asset_check(
        asset=site.asset_key(asset_name),
        name="no_duplicate_keys",
        description=f"No {spec.id_field} is held by two live documents.",
        required_resource_keys={"mongo"},
    )
    def no_duplicates(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        duplicates = duplicate_keys(
            context.resources.mongo.get_database(), spec.collection, site.connection_id,
            spec.id_field,
        )
        return dg.AssetCheckResult(
            passed=not duplicates,
            metadata={"duplicates": len(duplicates), "sample": ", ".join(duplicates[:SAMPLE])},
        )

    return [not_empty, no_duplicates]


def build_sync_errors_check(site: JiraSite) -> dg.AssetChecksDefinition:
    """Warns while `jira_sync_errors` holds dead letters of the connection (records Jira sent
    that could not be stored); a later run that stores the record clears its dead letter."""

    @dg.asset_check(
        asset=site.asset_key("jira_issues"),
        name="no_sync_errors",
        description="jira_sync_errors holds no record of this connection that a sync could not "
        "store (each dead letter names the entity, the key and the reason).",
        required_resource_keys={"mongo"},
    )
    def no_sync_errors(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        db: Database = context.resources.mongo.get_database()
        count, newest = sync_errors(db, site.connection_id, limit=SAMPLE)
        return dg.AssetCheckResult(
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

    return no_sync_errors
