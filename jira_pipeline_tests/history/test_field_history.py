"""The field history of one issue, rebuilt from its stored document and its changelog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jira_pipeline.history.fields import (
    FieldCatalog,
    field_history_rows,
    issue_field_intervals,
)

CREATED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return CREATED + timedelta(hours=hours)


def issue(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issue_id": "10001", "key": "CORE-1", "project_id": "100", "project_key": "CORE",
        "status_id": "3", "status_name": "In Progress", "status_category": "In Progress",
        "priority": "High", "assignee_account_id": "acc-bob", "reporter_account_id": "acc-ann",
        "labels": ["backend", "urgent"], "created": CREATED,
        "raw": {"fields": {
            "priority": {"id": "2", "name": "High"},
            "assignee": {"accountId": "acc-bob", "displayName": "Bob"},
            "creator": {"accountId": "acc-ann"},
            "components": [{"id": "501", "name": "API"}, {"id": "502", "name": "UI"}],
        }},
    }  # fmt: skip
    doc.update(overrides)
    return doc


def item(field_id: str, frm: str | None, frm_s: str | None, to: str | None,
         to_s: str | None, field: str | None = None) -> dict[str, Any]:
    return {"field": field or field_id, "field_id": field_id, "field_type": "jira",
            "from": frm, "from_string": frm_s, "to": to, "to_string": to_s}


def history(history_id: str, hours: float, *items: dict[str, Any],
            author: str = "acc-carl") -> dict[str, Any]:
    return {"issue_id": "10001", "issue_key": "CORE-1", "history_id": history_id,
            "author_account_id": author, "created": at(hours), "items": list(items)}


def values(intervals: list[Any]) -> list[tuple[datetime, Any]]:
    return [(interval.valid_from, interval.value) for interval in intervals]


def test_unchanged_fields_hold_their_current_value_since_creation() -> None:
    fields = issue_field_intervals(issue(status_id="10000", status_name="To Do"), [])
    assert set(fields) == {"status", "assignee", "priority", "labels"}
    (status,) = fields["status"]
    assert (status.valid_from, status.valid_until, status.value, status.value_string) == (
        CREATED, None, "10000", "To Do")
    assert status.author_account_id == "acc-ann" and status.history_id is None
    assert fields["priority"][0].value == "2" and fields["priority"][0].value_string == "High"
    assert fields["labels"][0].value == ("backend", "urgent")


def test_the_value_at_creation_is_the_first_changes_from() -> None:
    changelog = [
        history("11", 2, item("status", "10000", "To Do", "3", "In Progress")),
        history("12", 5, item("status", "3", "In Progress", "10001", "In Review")),
        history("13", 7, item("status", "10001", "In Review", "3", "In Progress")),
    ]
    status = issue_field_intervals(issue(), changelog)["status"]
    assert values(status) == [(CREATED, "10000"), (at(2), "3"), (at(5), "10001"), (at(7), "3")]
    assert [i.valid_until for i in status] == [at(2), at(5), at(7), None]
    assert [i.author_account_id for i in status] == ["acc-ann", "acc-carl", "acc-carl", "acc-carl"]
    assert [i.history_id for i in status] == [None, "11", "12", "13"]
    assert status[0].value_string == "To Do"


def test_histories_out_of_order_are_read_oldest_first() -> None:
    changelog = [
        history("13", 7, item("status", "10001", "In Review", "3", "In Progress")),
        history("11", 2, item("status", "10000", "To Do", "3", "In Progress")),
        history("12", 5, item("status", "3", "In Progress", "10001", "In Review")),
    ]
    status = issue_field_intervals(issue(), changelog)["status"]
    assert values(status) == [(CREATED, "10000"), (at(2), "3"), (at(5), "10001"), (at(7), "3")]


def test_changes_at_one_instant_keep_the_last_by_history_id() -> None:
    changelog = [
        history("22", 3, item("status", "10001", "In Review", "3", "In Progress")),
        history("21", 3, item("status", "10000", "To Do", "10001", "In Review")),
    ]
    status = issue_field_intervals(issue(), changelog)["status"]
    # One row per (issue, field, valid_from): the zero-length "In Review" interval is dropped.
    assert values(status) == [(CREATED, "10000"), (at(3), "3")]
    assert status[1].history_id == "22"
    rows = field_history_rows(issue(), {"status": status})
    assert len({(row["field_id"], row["valid_from"]) for row in rows}) == len(rows)


def test_a_change_at_the_creation_instant_replaces_the_value_at_creation() -> None:
    changelog = [history("31", 0, item("status", "10000", "To Do", "3", "In Progress"))]
    status = issue_field_intervals(issue(), changelog)["status"]
    assert values(status) == [(CREATED, "3")]
    assert status[0].history_id == "31"


def test_a_field_the_issue_no_longer_has_keeps_its_changelog_history() -> None:
    changelog = [
        history("41", 1, item("customfield_10099", None, None, None, "gold", field="Tier")),
        history("42", 4, item("customfield_10099", None, "gold", None, "silver", field="Tier")),
    ]
    tier = issue_field_intervals(issue(), changelog)["customfield_10099"]
    assert [(i.valid_from, i.value_string) for i in tier] == [
        (CREATED, None), (at(1), "gold"), (at(4), "silver")]
    assert tier[-1].valid_until is None and tier[0].field_name == "Tier"


def test_field_names_come_from_jira_fields_when_stored() -> None:
    catalog = FieldCatalog.from_documents([
        {"connection_id": "c", "field_id": "customfield_10099", "name": "Service tier",
         "custom": True, "schema": {"type": "string"}, "is_deleted": False},
    ])
    changelog = [history("41", 1, item("customfield_10099", None, None, None, "gold", "Tier"))]
    fields = issue_field_intervals(issue(), changelog, catalog)
    assert fields["customfield_10099"][0].field_name == "Service tier"
    assert fields["status"][0].field_name == "status"  # not in jira_fields: Jira's id


def test_an_item_without_field_id_is_placed_by_its_changelog_name() -> None:
    catalog = FieldCatalog.from_documents([
        {"field_id": "customfield_10020", "name": "Sprint", "schema": {"type": "array"}},
    ])
    no_id = {"field": "Sprint", "from": "", "from_string": "", "to": "7", "to_string": "S7"}
    legacy = {"field": "status", "from": "10000", "from_string": "To Do", "to": "3",
              "to_string": "In Progress"}
    fields = issue_field_intervals(issue(), [history("51", 2, no_id, legacy)], catalog)
    assert values(fields["customfield_10020"]) == [(CREATED, ()), (at(2), ("7",))]
    assert values(fields["status"]) == [(CREATED, "10000"), (at(2), "3")]


def test_labels_written_whole_are_sets_per_interval() -> None:
    changelog = [
        history("61", 1, item("labels", None, None, None, "backend")),
        history("62", 2, item("labels", None, "backend", None, "urgent backend")),
    ]
    labels = issue_field_intervals(issue(), changelog)["labels"]
    assert [(i.valid_from, i.value) for i in labels] == [
        (CREATED, ()), (at(1), ("backend",)), (at(2), ("backend", "urgent"))]
    rows = field_history_rows(issue(), {"labels": labels})
    assert rows[-1]["value"] == ["backend", "urgent"] and rows[-1]["is_current"] is True


def test_components_changed_one_value_per_item_are_walked_back_from_the_current_set() -> None:
    changelog = [
        # One entry adding UI and removing Docs, then one adding API.
        history("71", 1, item("components", None, None, "502", "UI", field="Component"),
                item("components", "503", "Docs", None, None, field="Component")),
        history("72", 3, item("components", None, None, "501", "API", field="Component")),
    ]
    components = issue_field_intervals(issue(), changelog)["components"]
    assert [(i.valid_from, i.value) for i in components] == [
        (CREATED, ("503",)), (at(1), ("502",)), (at(3), ("501", "502"))]
    assert components[0].value_string == ("Docs",)
    assert components[-1].value_string == ("API", "UI")
    assert components[-1].field_name == "Component"


def test_sprints_written_whole_with_ids_and_names() -> None:
    catalog = FieldCatalog.from_documents([
        {"field_id": "customfield_10020", "name": "Sprint", "schema": {"type": "array"}},
    ])
    changelog = [
        history("81", 1, item("customfield_10020", "", "", "7", "Sprint 7")),
        history("82", 5, item("customfield_10020", "7", "Sprint 7", "7, 8", "Sprint 7, Sprint 8")),
    ]
    sprints = issue_field_intervals(issue(), changelog, catalog)["customfield_10020"]
    assert [(i.value, i.value_string) for i in sprints] == [
        ((), ()), (("7",), ("Sprint 7",)), (("7", "8"), ("Sprint 7", "Sprint 8"))]


def test_assignee_and_priority_keep_jira_ids_as_values() -> None:
    changelog = [
        history("91", 1, item("assignee", None, None, "acc-bob", "Bob")),
        history("92", 2, item("priority", "3", "Medium", "2", "High")),
    ]
    fields = issue_field_intervals(issue(), changelog)
    assert [(i.value, i.value_string) for i in fields["assignee"]] == [
        (None, None), ("acc-bob", "Bob")]
    assert [(i.value, i.value_string) for i in fields["priority"]] == [
        ("3", "Medium"), ("2", "High")]


def test_an_incomplete_changelog_shows_as_a_current_value_unlike_the_issue() -> None:
    # The changelog's last status is In Review, the issue is In Progress: the history says what
    # the changelog says, and the consistency check finds the difference.
    changelog = [history("11", 2, item("status", "10000", "To Do", "10001", "In Review"))]
    status = issue_field_intervals(issue(), changelog)["status"]
    assert status[-1].value == "10001" and issue()["status_id"] == "3"


def test_rows_carry_the_issue_and_one_current_row_per_field() -> None:
    changelog = [history("11", 2, item("status", "10000", "To Do", "3", "In Progress"))]
    rows = field_history_rows(issue(), issue_field_intervals(issue(), changelog))
    assert {row["issue_key"] for row in rows} == {"CORE-1"}
    current = [row for row in rows if row["is_current"]]
    assert sorted(row["field_id"] for row in current) == [
        "assignee", "labels", "priority", "status"]
    assert all(row["valid_until"] is None for row in current)


def test_stored_field_documents_mark_their_arrays() -> None:
    # jira_fields documents keep Jira's schema as `schema_type`, not the raw `schema` object.
    catalog = FieldCatalog.from_documents([
        {"field_id": "customfield_10020", "name": "Sprint", "schema_type": "array"},
        {"field_id": "customfield_10016", "name": "Story point estimate",
         "schema_type": "number"},
    ])
    assert catalog.is_array("customfield_10020") and not catalog.is_array("customfield_10016")
