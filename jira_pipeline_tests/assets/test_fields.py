"""`jira_fields`: Jira's field catalog as a full-refresh dimension; trashed fields are kept,
marked deleted, and come back to life; `field_names` resolves ids to names."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.storage.field_names import field_names
from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json


def stored_fields(pipeline: Pipeline, **selector: object) -> dict[str, dict]:
    return {doc["field_id"]: doc for doc in pipeline.db["jira_fields"].find(selector)}


def test_the_field_catalog_is_stored_as_jira_serves_it(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=2)

    result = pipeline.run("jira_dimensions_job")

    with basic_client(pipeline.fake) as client:
        catalog = ok_json(client.get("/rest/api/3/field"))
    docs = stored_fields(pipeline)
    assert {f["id"]: (f["name"], f["custom"], f["clauseNames"]) for f in catalog} == {
        i: (d["name"], d["custom"], d["clause_names"]) for i, d in docs.items()
    }
    sprint = docs["customfield_10020"]
    assert (sprint["schema_type"], sprint["schema_items"], sprint["schema_custom"]) == (
        "array", "json", "com.pyxis.greenhopper.jira:gh-sprint")
    assert docs["summary"]["raw"]["schema"] == {"type": "string", "system": "summary"}
    connection = site_connection_id(pipeline.fake.base_url)
    assert {d["connection_id"] for d in docs.values()} == {connection}
    [meta] = materializations(result, "jira_fields")
    assert meta["records_fetched"] == meta["inserted"] == len(catalog)
    assert meta["api_calls"] == 1
    checks = check_results(result)
    assert checks[("jira_fields", "not_empty")].passed
    assert checks[("jira_fields", "no_duplicate_keys")].passed

    names = field_names(pipeline.db, connection)
    assert names["customfield_10020"] == "Sprint"
    assert names["customfield_10016"] == "Story point estimate"
    assert names == {f["id"]: f["name"] for f in catalog}
    assert field_names(pipeline.db, "another-connection") == {}


def test_a_trashed_field_is_marked_deleted_and_revived_when_restored(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=2)
    pipeline.run("jira_dimensions_job")
    connection = site_connection_id(pipeline.fake.base_url)

    pipeline.fake.admin.trash_field("customfield_10036")
    trashed = pipeline.run("jira_dimensions_job")

    gone = stored_fields(pipeline)["customfield_10036"]
    assert gone["is_deleted"] is True and gone["deleted_at"] is not None
    assert materializations(trashed, "jira_fields")[0]["marked_deleted"] == 1
    assert "customfield_10036" not in field_names(pipeline.db, connection, include_deleted=False)
    # Histories still name a trashed field: the reader keeps it by default.
    assert field_names(pipeline.db, connection)["customfield_10036"] == "Customer reference"

    pipeline.fake.admin.restore_field("customfield_10036")
    pipeline.run("jira_dimensions_job")
    back = stored_fields(pipeline)["customfield_10036"]
    assert back["is_deleted"] is False and back["deleted_at"] is None
    assert stored_fields(pipeline, is_deleted=True) == {}


def test_data_center_fields_come_from_rest_api_2(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=10, days=2, mode="datacenter", pat="demo-pat")

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    assert "customfield_10020" in stored_fields(pipeline, is_deleted=False)
    assert pipeline.fake.admin.stats()["requests"]["GET /rest/api/2/field"] == {"200": 1}
