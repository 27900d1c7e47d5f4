"""Names issues copy from dimensions follow the dimension: statuses, project keys, parents' keys.
Through pymongo's API, on the embedded store and (with MONGODB_TEST_URI) a server."""

from __future__ import annotations

from datetime import timedelta

from jira_pipeline.storage.copied_names import refresh_copied_names
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline_tests.storage.conftest import T0, Store, issue


def status(status_id: str, name: str, category: str, connection_id: str = "conn-1") -> dict:
    return {"connection_id": connection_id, "status_id": status_id, "name": name,
            "status_category": category, "scope_project_id": None,
            "raw": {"id": status_id, "name": name}}


def project(project_id: str, key: str, connection_id: str = "conn-1") -> dict:
    return {"connection_id": connection_id, "project_id": project_id, "key": key, "name": key,
            "project_type": "software", "category": None, "lead_account_id": None,
            "raw": {"id": project_id, "key": key}}


def by_id(store: Store) -> dict[str, dict]:
    return {doc["issue_id"]: doc for doc in store.db.jira_issues.find({})}


def test_a_renamed_status_is_copied_into_its_issues_only(store: Store) -> None:
    done = issue(3, status_id="2", status_name="Done", status_category="Done")
    upsert_records(store.db, "issues", [issue(1), issue(2), done])
    upsert_records(store.db, "statuses", [status("1", "Open", "To Do"),
                                          status("2", "Done", "Done")])

    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 2}

    stored = by_id(store)
    assert [stored[i]["status_name"] for i in ("1", "2", "3")] == ["Open", "Open", "Done"]
    assert stored["1"]["raw"] == issue(1)["raw"]  # Jira's JSON stays as Jira sent it
    assert stored["1"]["updated"] == stored["3"]["updated"]
    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 0}


def test_a_recategorised_status_is_copied_and_other_connections_are_left_alone(
    store: Store,
) -> None:
    upsert_records(store.db, "issues", [issue(1), issue(1, connection_id="conn-2")])
    upsert_records(store.db, "statuses", [status("1", "To Do", "Done"),
                                          status("1", "To Do", "In Progress", "conn-2")])

    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 1}

    categories = {(d["connection_id"], d["status_category"]) for d in store.db.jira_issues.find()}
    assert categories == {("conn-1", "Done"), ("conn-2", "To Do")}


def test_a_refreshed_issue_is_replaced_whole_by_its_next_fetch(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])
    upsert_records(store.db, "statuses", [status("1", "Open", "To Do")])
    refresh_copied_names(store.db, "statuses", "conn-1")

    # Jira renamed the status back; the issue as fetched is byte for byte what was first stored.
    counts = upsert_records(store.db, "issues", [issue(1)])

    assert (counts.updated, counts.unchanged) == (1, 0)
    assert by_id(store)["1"]["status_name"] == "To Do"


def test_a_deleted_status_row_renames_nothing(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])
    upsert_records(store.db, "statuses", [status("1", "Open", "To Do")])
    store.db.jira_statuses.update_many({}, {"$set": {"is_deleted": True}})

    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 0}
    assert by_id(store)["1"]["status_name"] == "To Do"


def test_entities_issues_copy_nothing_from_are_not_refreshed(store: Store) -> None:
    assert refresh_copied_names(store.db, "users", "conn-1") == {}
    assert refresh_copied_names(store.db, "issues", "conn-1") == {}


def test_a_changed_project_key_rekeys_issues_and_their_children(store: Store) -> None:
    upsert_records(store.db, "issues", [
        issue(1, project_key="CORE"),
        issue(2, project_key="CORE", parent_key="CORE-1"),
        issue(3, project_key="WEB", project_id="10001", parent_key="CORE-1"),
        issue(4, project_key="WEB", project_id="10001"),
    ])
    upsert_records(store.db, "projects", [project("10000", "PLAT"), project("10001", "WEB")])

    refresh_copied_names(store.db, "projects", "conn-1")

    stored = by_id(store)
    assert {i: (d["key"], d["project_key"], d["parent_key"]) for i, d in stored.items()} == {
        "1": ("PLAT-1", "PLAT", None),
        "2": ("PLAT-2", "PLAT", "PLAT-1"),
        "3": ("WEB-3", "WEB", "PLAT-1"),
        "4": ("WEB-4", "WEB", None),
    }


def test_a_moved_parent_takes_its_children_along_to_its_new_key(store: Store) -> None:
    upsert_records(store.db, "issues", [
        issue(1, project_key="CORE"),
        issue(2, project_key="CORE", parent_key="CORE-1"),
        issue(3, project_key="CORE", parent_key="CORE-9"),
        issue(4, project_key="CORE", parent_key="CORE-1", connection_id="conn-2"),
    ])

    moved = issue(1, T0 + timedelta(minutes=5), project_key="WEB", key="WEB-77")
    upsert_records(store.db, "issues", [moved])

    parents = {(d["connection_id"], d["issue_id"]): d["parent_key"]
               for d in store.db.jira_issues.find()}
    assert parents == {("conn-1", "1"): None, ("conn-1", "2"): "WEB-77",
                       ("conn-1", "3"): "CORE-9", ("conn-2", "4"): "CORE-1"}
    # The child's next fetch (Jira names the new key too) replaces it: nothing is stale.
    child = issue(2, project_key="CORE", parent_key="WEB-77")
    assert upsert_records(store.db, "issues", [child]).updated == 1


def test_an_older_copy_of_a_moved_issue_moves_no_children(store: Store) -> None:
    upsert_records(store.db, "issues", [
        issue(1, T0 + timedelta(minutes=5), project_key="WEB", key="WEB-77"),
        issue(2, project_key="CORE", parent_key="WEB-77"),
    ])

    stale = issue(1, T0, project_key="CORE")  # as it was before the move
    counts = upsert_records(store.db, "issues", [stale])

    assert counts.skipped_stale == 1
    assert by_id(store)["2"]["parent_key"] == "WEB-77"


def test_a_status_renamed_again_later_is_copied_again(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])
    upsert_records(store.db, "statuses", [status("1", "Open", "To Do")])
    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 1}

    upsert_records(store.db, "statuses", [status("1", "Backlog", "To Do")])

    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 1}
    assert by_id(store)["1"]["status_name"] == "Backlog"


def test_a_rename_whose_copy_never_ran_is_copied_by_the_next_refresh(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])
    upsert_records(store.db, "statuses", [status("1", "Open", "To Do")])
    # The run died before copying; the next run finds the status unchanged in Jira.
    counts = upsert_records(store.db, "statuses", [status("1", "Open", "To Do")])
    assert counts.unchanged == 1

    assert refresh_copied_names(store.db, "statuses", "conn-1") == {"issues_renamed": 1}
    assert by_id(store)["1"]["status_name"] == "Open"
