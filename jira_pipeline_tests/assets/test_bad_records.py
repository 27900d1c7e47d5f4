"""Bad records never block good ones: an issue with an odd field is stored with that key field
null (its raw JSON untouched) or, when it cannot be stored at all, kept in `jira_sync_errors`;
the other issues of the run are stored either way, and every error names the issue key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations

SYNC_ERRORS_CHECK = ("jira_issues", "no_sync_errors")


def sync(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    """Every partition of issues (and its checks) in one run, as a backfill runs."""
    keys = pipeline.partition_keys()
    return pipeline.run("jira_issues_job", keys[0], keys[-1], raise_on_error=False)


def issues_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    found = materializations(result, "jira_issues")
    assert found, "jira_issues was not materialized"
    return found[0]


def an_issue(pipeline: Pipeline, index: int = 7) -> dict[str, Any]:
    return sorted(pipeline.fake.admin.issues(), key=lambda issue: int(issue["id"]))[index]


def stored(pipeline: Pipeline, issue_id: str) -> dict[str, Any]:
    found = pipeline.db["jira_issues"].find_one({"issue_id": issue_id})
    assert found is not None, f"issue {issue_id} is not stored"
    return found


def warnings_of(pipeline: Pipeline, result: dg.ExecuteInProcessResult) -> list[str]:
    """The run's log messages (Dagster's event log of the run, as the UI shows it)."""
    return [record.user_message for record in pipeline.instance.all_logs(result.run_id)]


@pytest.fixture
def pipeline(pipeline_factory: Callable[..., Pipeline]) -> Pipeline:
    return pipeline_factory(issues=200, days=3)


def test_labels_as_a_string_is_stored_null_not_split(pipeline: Pipeline) -> None:
    odd = an_issue(pipeline)
    pipeline.fake.admin.set_raw_fields(odd["key"], {"labels": "urgent"})

    result = sync(pipeline)

    assert result.success
    doc = stored(pipeline, odd["id"])
    assert doc["labels"] is None  # not ["u", "r", "g", "e", "n", "t"]
    assert doc["raw"]["fields"]["labels"] == "urgent"  # the raw JSON is kept as Jira sent it
    assert issues_metadata(result)["fields_nulled"] == {"labels": 1}
    others = pipeline.db["jira_issues"].find({"issue_id": {"$ne": odd["id"]}}, {"labels": 1})
    assert all(isinstance(other["labels"], list) for other in others)


def test_priority_as_a_string_is_stored_null(pipeline: Pipeline) -> None:
    odd = an_issue(pipeline)
    pipeline.fake.admin.set_raw_fields(odd["key"], {"priority": "High"})

    result = sync(pipeline)

    assert result.success
    doc = stored(pipeline, odd["id"])
    assert doc["priority"] is None and doc["raw"]["fields"]["priority"] == "High"
    assert issues_metadata(result)["fields_nulled"] == {"priority": 1}
    logs = warnings_of(pipeline, result)
    assert any(odd["key"] in line and "priority" in line for line in logs), logs


# One odd value per case; `updated` missing cannot be stored (no version to guard, no partition)
# and is dead-lettered, the others are stored with the key field null.
ODD_FIELDS: dict[str, tuple[dict[str, Any], tuple[str, ...], str | None]] = {
    "updated_missing": ({}, ("updated",), None),
    "summary_object": ({"summary": {"text": "not a string"}}, (), "summary"),
    "created_number": ({"created": 1736937000000}, (), "created"),
    "status_string": ({"status": "Done"}, (), "status_id"),
    "updated_number": ({"updated": 1736937000000}, (), None),
}


@pytest.mark.parametrize("case", sorted(ODD_FIELDS))
def test_an_odd_field_in_one_issue_does_not_block_the_others(
    pipeline: Pipeline, case: str
) -> None:
    fields, remove, nulled = ODD_FIELDS[case]
    odd = an_issue(pipeline)
    pipeline.fake.admin.set_raw_fields(odd["key"], fields, remove)
    live = pipeline.fake_issues()
    assert len(live) == 200

    first = sync(pipeline)
    again = sync(pipeline)

    for result in (first, again):  # later runs containing that partition succeed too
        assert result.success
    stored_ids = set(pipeline.stored_issues())
    assert stored_ids >= set(live) - {odd["id"]}
    letters = list(pipeline.db["jira_sync_errors"].find({}))
    if nulled is None:
        assert odd["id"] not in stored_ids
        assert [(letter["jira_id"], letter["key"]) for letter in letters] == [
            (odd["id"], odd["key"])
        ]
        assert letters[0]["entity"] == "issues" and "updated" in letters[0]["reason"]
        assert letters[0]["raw"]["id"] == odd["id"]
        assert letters[0]["first_seen"] <= letters[0]["last_seen"]
        assert issues_metadata(again)["dead_lettered"] == 1
    else:
        assert letters == []
        assert stored(pipeline, odd["id"])[nulled] is None
        assert issues_metadata(again)["fields_nulled"] == {nulled: 1}


def test_errors_name_the_issue_key(pipeline: Pipeline) -> None:
    no_updated, odd_summary = an_issue(pipeline, 3), an_issue(pipeline, 11)
    pipeline.fake.admin.set_raw_fields(no_updated["key"], remove=("updated",))
    pipeline.fake.admin.set_raw_fields(odd_summary["key"], {"summary": ["a", "list"]})

    result = sync(pipeline)

    assert result.success
    (letter,) = pipeline.db["jira_sync_errors"].find({})
    assert no_updated["key"] in letter["reason"]
    logs = warnings_of(pipeline, result)
    assert any(no_updated["key"] in line and "jira_sync_errors" in line for line in logs), logs
    assert any(odd_summary["key"] in line and "summary" in line for line in logs), logs
    check = check_results(result)[SYNC_ERRORS_CHECK]
    assert no_updated["key"] in str(check.metadata["sample"].value)


def test_sync_errors_check_warns_while_dead_letters_exist(pipeline: Pipeline) -> None:
    odd = an_issue(pipeline)
    pipeline.fake.admin.set_raw_fields(odd["key"], remove=("updated",))

    broken = sync(pipeline)

    check = check_results(broken)[SYNC_ERRORS_CHECK]
    assert broken.success  # a WARN check does not fail the run
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["sync_errors"].value == 1

    # Jira's copy is repaired (and edited, so today's partition holds it): the next run stores
    # it, removes its dead letter, and the check passes again.
    pipeline.fake.admin.set_raw_fields(odd["key"], reset=True)
    pipeline.fake.admin.touch_issue(odd["key"])
    repaired = sync(pipeline)

    assert repaired.success
    assert stored(pipeline, odd["id"])["key"] == odd["key"]
    assert pipeline.db["jira_sync_errors"].count_documents({}) == 0
    assert check_results(repaired)[SYNC_ERRORS_CHECK].passed


def test_an_issue_over_16_mib_from_jira_is_stored_trimmed(pipeline: Pipeline) -> None:
    big = an_issue(pipeline)
    pipeline.fake.admin.set_raw_fields(big["key"], {"customfield_10099": "x" * (17 * 1024 * 1024)})

    result = sync(pipeline)

    assert result.success
    doc = stored(pipeline, big["id"])
    assert doc["raw_truncated"] is True
    assert doc["raw_truncated_paths"] == ["fields.customfield_10099"]
    assert doc["raw"]["fields"]["summary"] == doc["summary"]  # the rest of raw is kept
    assert issues_metadata(result)["raw_truncated"] == 1
    assert len(pipeline.stored_issues()) == 200
