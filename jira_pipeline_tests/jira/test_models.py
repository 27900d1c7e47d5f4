"""Records built from Jira JSON: examples of Atlassian's OpenAPI document and Jira-shaped issues."""

import json
from datetime import UTC, datetime

import pytest

from jira_pipeline.jira.models import (
    IssueRecord,
    ProjectRecord,
    RecordRejected,
    StatusRecord,
    UserRecord,
)
from jira_pipeline_tests.openapi import read_document


@pytest.fixture(scope="module")
def examples():
    paths = read_document()["paths"]

    def example(path, method="get"):
        content = paths[path][method]["responses"]["200"]["content"]["application/json"]
        return json.loads(content["example"])

    return example


def test_project_record_from_the_documented_project_search_page(examples):
    raw = examples("/rest/api/3/project/search")["values"][0]
    record = ProjectRecord.from_raw(raw, "conn-1")
    assert (record.project_id, record.key, record.name) == ("10000", "EX", "Example")
    assert record.category == "FIRST"
    assert record.raw == raw and record.connection_id == "conn-1"


def test_status_record_from_the_flat_status_list(examples):
    raw = examples("/rest/api/3/status")[0]
    record = StatusRecord.from_raw(raw, "c")
    assert (record.status_id, record.name, record.status_category) == ("10000", "In Progress",
                                                                      "In Progress")
    assert record.scope_project_id is None


def test_status_record_from_statuses_search_names_category_and_project_scope(examples):
    raw = examples("/rest/api/3/statuses/search")["values"][0]
    record = StatusRecord.from_raw(raw, "c")
    assert (record.status_id, record.status_category, record.scope_project_id) == ("1000", "Done",
                                                                                  "1")


def test_user_record_from_the_documented_user_list(examples):
    raw = examples("/rest/api/3/users/search")[0]
    record = UserRecord.from_raw(raw, "c")
    assert record.account_id == "5b10a2844c20165700ede21g"
    assert record.account_type == "atlassian" and record.active is False


ISSUE = {
    "id": "10042",
    "key": "ABC-7",
    "self": "https://acme.atlassian.net/rest/api/3/issue/10042",
    "fields": {
        "summary": "Checkout fails",
        "project": {"id": "10000", "key": "ABC", "name": "Alpha"},
        "issuetype": {"id": "10001", "name": "Bug"},
        "status": {"id": "3", "name": "In Progress",
                   "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"}},
        "priority": {"id": "2", "name": "High"},
        "assignee": {"accountId": "acc-1", "displayName": "A"},
        "reporter": {"accountId": "acc-2", "displayName": "B"},
        "labels": ["checkout", "p1"],
        "created": "2025-01-15T09:30:12.345+0100",
        "updated": "2025-01-16T23:59:59.999-0800",
        "resolutiondate": None,
        "parent": {"id": "10040", "key": "ABC-5"},
        "customfield_10010": 3.5,
    },
}


def test_issue_record_extracts_key_fields_and_keeps_the_raw_json():
    record = IssueRecord.from_raw(ISSUE, "c")
    assert (record.issue_id, record.key, record.project_id, record.project_key) == (
        "10042", "ABC-7", "10000", "ABC")
    assert (record.issue_type, record.status_id, record.status_name, record.status_category) == (
        "Bug", "3", "In Progress", "In Progress")
    assert (record.priority, record.assignee_account_id, record.reporter_account_id) == (
        "High", "acc-1", "acc-2")
    assert record.labels == ["checkout", "p1"] and record.parent_key == "ABC-5"
    assert record.raw["fields"]["customfield_10010"] == 3.5


def test_issue_datetimes_are_aware_utc_whatever_offset_jira_wrote():
    record = IssueRecord.from_raw(ISSUE, "c")
    assert record.created == datetime(2025, 1, 15, 8, 30, 12, 345000, tzinfo=UTC)
    assert record.updated == datetime(2025, 1, 17, 7, 59, 59, 999000, tzinfo=UTC)
    assert record.resolution_date is None


def test_unassigned_issue_without_optional_fields_still_makes_a_record():
    raw = {"id": "1", "key": "X-1", "fields": {"updated": "2025-01-01T00:00:00.000+0000"}}
    record = IssueRecord.from_raw(raw, "c")
    assert record.assignee_account_id is None and record.labels == [] and record.status_id is None


def test_issue_without_updated_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="no `updated`"):
        IssueRecord.from_raw({"id": "1", "key": "X-1", "fields": {}}, "c")


def test_model_dump_gives_the_document_storage_writes():
    document = IssueRecord.from_raw(ISSUE, "c").model_dump()
    assert document["issue_id"] == "10042" and document["raw"] == ISSUE
    assert isinstance(document["updated"], datetime)


def test_data_center_users_and_leads_are_identified_by_key():
    user = UserRecord.from_raw({"key": "JIRAUSER10100", "name": "jdoe", "active": True}, "c")
    assert user.account_id == "JIRAUSER10100"
    project = ProjectRecord.from_raw({"id": "1", "key": "P", "lead": {"key": "JIRAUSER1"}}, "c")
    assert project.lead_account_id == "JIRAUSER1"


ODD_VALUES = [
    ("labels", "urgent", "labels"),
    ("labels", ["ok", 3], "labels"),
    ("priority", "High", "priority"),
    ("summary", {"text": "x"}, "summary"),
    ("created", 1736937000000, "created"),
    ("created", "yesterday", "created"),
    ("resolutiondate", ["2025-01-01"], "resolution_date"),
    ("assignee", "someone", "assignee_account_id"),
    ("project", "ACME", "project_id"),
]


@pytest.mark.parametrize(("field", "value", "extracted"), ODD_VALUES)
def test_a_value_of_an_unexpected_type_is_extracted_as_null_and_named(field, value, extracted):
    raw = {"id": "1", "key": "X-1",
           "fields": {"updated": "2025-01-01T00:00:00.000+0000", field: value}}
    record = IssueRecord.from_raw(raw, "c")
    assert getattr(record, extracted) is None
    assert extracted in record.nulled_fields
    assert record.raw["fields"][field] == value
    assert "nulled_fields" not in record.model_dump()  # reported, never stored


def test_missing_and_null_values_are_not_odd():
    raw = {"id": "1", "key": "X-1", "fields": {"updated": "2025-01-01T00:00:00.000+0000",
                                               "assignee": None, "labels": None}}
    record = IssueRecord.from_raw(raw, "c")
    assert record.nulled_fields == () and record.labels == []


@pytest.mark.parametrize("raw", [
    {"key": "X-9", "fields": {"updated": "2025-01-01T00:00:00.000+0000"}},
    {"id": "9", "fields": {"updated": "2025-01-01T00:00:00.000+0000"}},
    {"id": "9", "key": "X-9", "fields": {"updated": 1736937000000}},
])
def test_an_issue_that_cannot_be_stored_is_rejected_naming_what_identifies_it(raw):
    with pytest.raises(RecordRejected) as rejected:
        IssueRecord.from_raw(raw, "c")
    assert rejected.value.connection_id == "c" and rejected.value.raw is raw
    assert (raw.get("key") or raw.get("id")) in str(rejected.value)
