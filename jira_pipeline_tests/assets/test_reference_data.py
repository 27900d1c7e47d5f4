"""The reference data analysts join on (`jira_issue_types`, `jira_priorities`,
`jira_resolutions`, `jira_status_categories`): full-refresh dimensions of the dimensions step,
vanished rows marked deleted and revived, and the check that issues' references are stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.storage.indexes import REFERENCE_INDEX_NAMES
from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json, walk_offset_pages

REFERENCE = {  # collection: (id field, the Cloud resource it comes from)
    "jira_issue_types": ("issue_type_id", "/rest/api/3/issuetype"),
    "jira_priorities": ("priority_id", "/rest/api/3/priority/search"),
    "jira_resolutions": ("resolution_id", "/rest/api/3/resolution/search"),
    "jira_status_categories": ("status_category_id", "/rest/api/3/statuscategory"),
}


def stored(pipeline: Pipeline, collection: str, **selector: object) -> dict[str, dict]:
    id_field, _ = REFERENCE[collection]
    return {doc[id_field]: doc for doc in pipeline.db[collection].find(selector)}


def test_the_reference_data_is_stored_as_jira_serves_it(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=2)

    result = pipeline.run("jira_dimensions_job")

    connection = site_connection_id(pipeline.fake.base_url)
    with basic_client(pipeline.fake) as client:
        served = {
            "jira_issue_types": ok_json(client.get("/rest/api/3/issuetype")),
            "jira_priorities": walk_offset_pages(client, "/rest/api/3/priority/search", 50)[0],
            "jira_resolutions": walk_offset_pages(client, "/rest/api/3/resolution/search",
                                                  50)[0],
            "jira_status_categories": ok_json(client.get("/rest/api/3/statuscategory")),
        }
    checks = check_results(result)
    for collection, rows in served.items():
        docs = stored(pipeline, collection)
        assert set(docs) == {str(row["id"]) for row in rows}, collection
        assert all(doc["raw"] == row for row in rows for doc in [docs[str(row["id"])]])
        assert {d["connection_id"] for d in docs.values()} == {connection}
        assert all(d["is_deleted"] is False and d["synced_at"] for d in docs.values())
        [meta] = materializations(result, collection)
        assert meta["records_fetched"] == meta["inserted"] == len(rows)
        assert checks[(collection, "not_empty")].passed
        assert checks[(collection, "no_duplicate_keys")].passed
        index = pipeline.db[collection].index_information()[REFERENCE_INDEX_NAMES[collection]]
        assert index["unique"] is True
        assert [k for k, _ in index["key"]] == ["connection_id", REFERENCE[collection][0]]
    # /priority/search pages 50 rows: the fake's five priorities are one request.
    assert materializations(result, "jira_priorities")[0]["api_calls"] == 1

    epic = stored(pipeline, "jira_issue_types")["10000"]
    subtask = stored(pipeline, "jira_issue_types")["10004"]
    assert (epic["name"], epic["subtask"], epic["hierarchy_level"]) == ("Epic", False, 1)
    assert (subtask["subtask"], subtask["hierarchy_level"]) == (True, -1)
    assert epic["description"] == "A epic."
    high = stored(pipeline, "jira_priorities")["2"]
    assert (high["name"], high["status_color"], high["is_default"]) == ("High", "#f15C75", False)
    done = stored(pipeline, "jira_resolutions")["10000"]
    assert (done["name"], done["description"], done["is_default"]) == (
        "Done", "Work has been completed on this issue.", True)
    category = stored(pipeline, "jira_status_categories")["4"]
    assert (category["key"], category["name"], category["color_name"]) == (
        "indeterminate", "In Progress", "yellow")


def test_a_vanished_priority_is_marked_deleted_fails_the_check_and_is_revived(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3)
    synced = pipeline.sync_everything()
    assert check_results(synced)[("jira_issues", "reference_data_present")].passed
    in_use = {doc["raw"]["fields"]["priority"]["id"]
              for doc in pipeline.db["jira_issues"].find({}, {"raw.fields.priority.id": 1})}
    gone = sorted(in_use)[0]

    pipeline.fake.admin.remove_reference("priority", gone)
    pipeline.fake.admin.remove_reference("resolution", "10003")  # no issue carries it
    removed = pipeline.run("jira_dimensions_job")
    after = pipeline.sync_everything()

    doc = stored(pipeline, "jira_priorities")[gone]
    assert doc["is_deleted"] is True and doc["deleted_at"] is not None
    assert stored(pipeline, "jira_resolutions")["10003"]["is_deleted"] is True
    assert materializations(removed, "jira_priorities")[0]["marked_deleted"] == 1
    check = check_results(after)[("jira_issues", "reference_data_present")]
    assert not check.passed
    assert check.metadata["missing_priorities"].value == 1
    assert check.metadata["missing_issue_types"].value == 0
    assert check.metadata["missing_resolutions"].value == 0  # 10003 is no issue's
    assert f"priorities/{gone}" in check.metadata["sample"].value

    pipeline.fake.admin.restore_reference("priority", gone)
    back = pipeline.sync_everything()
    doc = stored(pipeline, "jira_priorities")[gone]
    assert doc["is_deleted"] is False and doc["deleted_at"] is None
    assert check_results(back)[("jira_issues", "reference_data_present")].passed


def test_a_missing_issue_type_or_resolution_fails_the_check(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3)
    pipeline.sync_everything()
    connection = site_connection_id(pipeline.fake.base_url)
    resolved = pipeline.db["jira_issues"].count_documents({"raw.fields.resolution.id": "10000"})
    assert resolved, "the dataset resolves some issues"
    # Rows lost from the store (say, a restore from an older dump): nothing else tells.
    pipeline.db["jira_resolutions"].delete_many({"connection_id": connection,
                                                 "resolution_id": "10000"})
    pipeline.db["jira_issue_types"].update_many({"connection_id": connection},
                                                {"$set": {"is_deleted": True}})

    result = pipeline.run("jira_issues_job", pipeline.today)

    check = check_results(result)[("jira_issues", "reference_data_present")]
    assert not check.passed
    assert check.metadata["missing_resolutions"].value == 1
    assert check.metadata["missing_issue_types"].value >= 1
    assert check.metadata["missing_priorities"].value == 0


def test_data_center_reference_data_comes_from_rest_api_2(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=10, days=2, mode="datacenter", pat="demo-pat")

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    requests = pipeline.fake.admin.stats()["requests"]
    for resource in ("issuetype", "priority", "resolution", "statuscategory"):
        assert requests[f"GET /rest/api/2/{resource}"] == {"200": 1}
    assert len(stored(pipeline, "jira_priorities", is_deleted=False)) == 5
    assert len(stored(pipeline, "jira_resolutions", is_deleted=False)) == 4
    assert len(stored(pipeline, "jira_issue_types", is_deleted=False)) == 5
    assert stored(pipeline, "jira_status_categories")["3"]["key"] == "done"


def test_the_reference_checks_come_from_one_pass_and_each_runs_alone(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from jira_pipeline.assets import checks

    pipeline = pipeline_factory(issues=40, days=3)
    pipeline.sync_everything()
    passes: list[tuple[bool, tuple[str, ...]]] = []
    real = checks.referenced_rows

    def counted(db: Any, connection_id: str, **groups: Any) -> dict[str, set[str]]:
        assert groups["sprints"] is False  # the sprint check reads its own
        passes.append((groups["people"], tuple(entity for entity, _ in groups["references"])))
        return real(db, connection_id, **groups)

    monkeypatch.setattr(checks, "referenced_rows", counted)
    both = pipeline.run("jira_issues_job", pipeline.today, assets=["jira_issues"])
    results = check_results(both)
    assert results[("jira_issues", "references_present")].passed
    assert results[("jira_issues", "reference_data_present")].passed
    assert results[("jira_issues", "project_parts_present")].passed
    assert len(passes) == 1
    assert passes[0][0] is True  # statuses and users
    assert set(passes[0][1]) == {"issue_types", "priorities", "resolutions",
                                 "project_versions", "project_components"}

    # One check selected alone (the UI's check subset): only it is evaluated, from its ids.
    passes.clear()
    issues = dg.AssetKey("jira_issues")
    job = pipeline.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(issues, "project_parts_present")},
    )
    alone = job.execute_in_process(instance=pipeline.instance)
    assert set(check_results(alone)) == {("jira_issues", "project_parts_present")}
    assert passes == [(False, ("project_versions", "project_versions", "project_components"))]
