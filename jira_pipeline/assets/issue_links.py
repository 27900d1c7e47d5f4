"""`jira_issue_links`: one row per issue and link (type, direction, the other issue), derived
from the stored issues' `issuelinks` with no request to Jira, partitioned like `jira_issues`.

A partition recomputes the links of every issue updated (or marked deleted) in its window, as
the history assets do, and of every issue linked to one of those: the IO manager replaces each
issue's rows whole, so a link removed leaves no row, and a deleted issue's rows go, on its side
and (though Jira does not move the other issue's `updated`) on the other side too."""

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from jira_pipeline.assets.issue_window import run_window
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import stored_asset_spec
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.derived_rows import DerivedRows, RowScope
from jira_pipeline.storage.entities import ISSUE_LINKS
from jira_pipeline.storage.history_reads import HistorySource
from jira_pipeline.storage.resources import MongoResource

SIDES = (("outwardIssue", "outward"), ("inwardIssue", "inward"))


def _links(issue: Mapping[str, Any]) -> list[dict[str, Any]]:
    links = ((issue.get("raw") or {}).get("fields") or {}).get("issuelinks")
    return [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []


def _other(link: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(direction, the other issue) of a link as one issue carries it, or None if malformed."""
    for side, direction in SIDES:
        other = link.get(side)
        if isinstance(other, dict) and other.get("id") not in (None, ""):
            return direction, other
    return None


def link_rows(issue: Mapping[str, Any], deleted: set[str]) -> list[dict[str, Any]]:
    """The rows of one stored issue's `raw.fields.issuelinks`: the link as this issue sees it
    (an issue that blocks another has it as `outwardIssue`: direction "outward", phrase
    "blocks"). Links to an issue stored as deleted, and malformed links, are left out."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for link in _links(issue):
        found = _other(link)
        link_id = _text(link.get("id"))
        if found is None or link_id is None or link_id in seen:
            continue
        direction, other = found
        if str(other["id"]) in deleted:
            continue
        seen.add(link_id)
        link_type = link.get("type")
        if not isinstance(link_type, dict):
            link_type = {}
        rows.append({
            "issue_id": str(issue["issue_id"]),
            "issue_key": issue.get("key"),
            "link_id": link_id,
            "link_type_id": _text(link_type.get("id")),
            "link_type_name": _text(link_type.get("name")),
            "direction": direction,
            "phrase": _text(link_type.get(direction)),
            "other_issue_id": str(other["id"]),
            "other_issue_key": _text(other.get("key")),
            "raw": link,
        })
    return rows


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


class IssueLinkRows:
    """The step's issues read in batches (key fields and `raw.fields.issuelinks` only), one
    scope per batch; `metadata()` says how many issues and links."""

    def __init__(self, source: HistorySource, issue_ids: Sequence[str]) -> None:
        self.source = source
        self.issue_ids = list(issue_ids)
        self.rows = 0
        self.linked_to_deleted = 0

    def scopes(self) -> Iterator[RowScope]:
        batch = self.source.batch_issues
        for offset in range(0, len(self.issue_ids), batch):
            ids = self.issue_ids[offset:offset + batch]
            issues = list(self.source._find(
                "jira_issues", {"issue_id": {"$in": ids}, "is_deleted": {"$ne": True}},
                {"issue_id": 1, "key": 1, "raw.fields.issuelinks": 1, "_id": 0}))
            others = {str(found[1]["id"]) for issue in issues for link in _links(issue)
                      for found in [_other(link)] if found is not None}
            deleted = {str(doc["issue_id"]) for doc in self.source._find(
                "jira_issues", {"issue_id": {"$in": sorted(others)}, "is_deleted": True},
                {"issue_id": 1, "_id": 0})} if others else set()
            rows = [row for issue in issues for row in link_rows(issue, deleted)]
            self.linked_to_deleted += sum(
                1 for issue in issues for link in _links(issue)
                for found in [_other(link)] if found is not None and str(found[1]["id"]) in deleted)
            self.rows += len(rows)
            yield RowScope({"issue_id": {"$in": ids}}, rows)

    def metadata(self) -> Mapping[str, Any]:
        return {"issues": len(self.issue_ids), "links": self.rows,
                "links_to_deleted_issues_left_out": self.linked_to_deleted,
                "store_queries": self.source.reads}


def linked_issue_ids(source: HistorySource, issue_ids: Sequence[str]) -> list[str]:
    """The step's issues and every issue whose stored links name one of them."""
    linked: set[str] = set(issue_ids)
    for offset in range(0, len(issue_ids), 1000):
        chunk = list(issue_ids[offset:offset + 1000])
        linked.update(str(doc["issue_id"]) for doc in source._find(
            ISSUE_LINKS.collection, {"other_issue_id": {"$in": chunk}},
            {"issue_id": 1, "_id": 0}))
    return sorted(linked)


def build_issue_links_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy
        return _build_issue_links_asset(site, partitions, settings)


def _build_issue_links_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    spec = stored_asset_spec(
        site, ISSUE_LINKS.collection,
        "One row per issue and issue link, as that issue sees it: link type id and name, "
        "direction (outward / inward), the phrase (\"blocks\", \"is blocked by\"), the other "
        "issue's id and key, and the link's JSON. Derived from the stored issues (no request); "
        "a partition replaces the rows of the issues updated in its window and of the issues "
        "linked to them.",
        deps=[site.asset_key("jira_issues")], kinds=("mongodb",))

    @dg.multi_asset(
        name=spec.key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def jira_issue_links(context: dg.AssetExecutionContext, mongo: MongoResource) -> DerivedRows:
        source = HistorySource(mongo.get_database(), site.connection_id)
        window = run_window(context, partitions, settings, site.asset_key("jira_issues"),
                            spec.key)
        ids = linked_issue_ids(source, source.window_issue_ids(window.start, window.end))
        rows = IssueLinkRows(source, ids)
        return DerivedRows(ISSUE_LINKS, site.connection_id, rows.scopes(), rows.metadata)

    return jira_issue_links
