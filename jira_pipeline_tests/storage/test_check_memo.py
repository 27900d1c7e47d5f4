"""The whole-store issue checks read only the issues written since their last evaluation when
they can (storage/check_memo.py): after any sequence of writes, moves, tombstones, revivals and
dimension deletions their answers equal a pass over every live issue."""

from __future__ import annotations

import importlib
import random
from datetime import timedelta
from typing import Any

import pytest

from jira_pipeline.assets.checks import (
    duplicate_issue_values,
    duplicate_values,
    missing_references_since_memo,
)
from jira_pipeline.assets.sensors import missing_dimension_rows
from jira_pipeline.storage.check_memo import MOST_WRITTEN, read_memo
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.issue_references import ISSUE_REFERENCE_DATA
from jira_pipeline.storage.upserts import mark_deleted_ids, upsert_records
from jira_pipeline.timeutil import utc_now
from jira_pipeline_tests.storage.conftest import T0, Store, issue

CONNECTION = "conn-1"
STATUSES = ["1", "2", "3", "4"]
USERS = ["user-1", "user-2", "user-3"]
PRIORITIES = ["p1", "p2", "p3"]
GROUPS = {"references_present": ("statuses", "users"),
          "reference_data_present": ("issue_types", "priorities", "resolutions")}
EVERY_ISSUE = "every live issue"


@pytest.fixture(autouse=True)
def no_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test's writes all fall within the margin a production memo re-reads (a minute): read
    # from the evaluation's own moment, so the issues written since are the test's later ones.
    monkeypatch.setattr("jira_pipeline.storage.check_memo.WRITTEN_MARGIN", timedelta(0))


def _issue(rng: random.Random, number: int, version: int, key: str | None = None) -> dict[str, Any]:
    fields = {"issuetype": {"id": "10001"}, "priority": {"id": rng.choice(PRIORITIES)},
              "resolution": None}
    record = issue(number, T0.replace(minute=version % 60, hour=version // 60 % 24),
                   status_id=rng.choice(STATUSES), reporter_account_id=rng.choice(USERS),
                   assignee_account_id=rng.choice([None, *USERS]))
    record["raw"]["fields"].update(fields)
    if key is not None:
        record["key"] = key
    return record


def _dimensions(db: Any) -> None:
    upsert_records(db, "statuses", [{"connection_id": CONNECTION, "status_id": s,
                                     "name": f"S{s}"} for s in STATUSES])
    upsert_records(db, "users", [{"connection_id": CONNECTION, "account_id": u,
                                  "display_name": u} for u in USERS])
    upsert_records(db, "issue_types", [{"connection_id": CONNECTION, "issue_type_id": "10001",
                                        "name": "Task"}])
    upsert_records(db, "priorities", [{"connection_id": CONNECTION, "priority_id": p,
                                       "name": p} for p in PRIORITIES])


def _expected_missing(db: Any) -> dict[str, list[str]]:
    return missing_dimension_rows(db, CONNECTION, people=True, references=ISSUE_REFERENCE_DATA,
                                  sprints=False)


def _since_memo(db: Any) -> tuple[dict[str, list[str]], str]:
    """What the step evaluates with both checks selected."""
    return missing_references_since_memo(db, CONNECTION, GROUPS, people=True,
                                         references=ISSUE_REFERENCE_DATA)


@pytest.mark.parametrize("margin_s", [0, 60])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_checks_read_since_their_memo_and_answer_as_a_whole_pass(
    store: Store, seed: int, margin_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the production margin every write of the test falls within it: which issues are
    re-read is then decided by what each memo read of them (`read_recently`)."""
    monkeypatch.setattr("jira_pipeline.storage.check_memo.WRITTEN_MARGIN",
                        timedelta(seconds=margin_s))
    rng = random.Random(seed)
    db = store.db
    _dimensions(db)
    version = 1
    upsert_records(db, "issues", [_issue(rng, n, version) for n in range(1, 61)])
    reads: list[str] = []
    for step in range(30):
        version += 1
        action = rng.choice(["edit", "edit", "move", "rekey", "delete", "revive", "drop_row",
                             "restore"])
        live = [d["issue_id"] for d in db.jira_issues.find(
            {"is_deleted": {"$ne": True}}, {"issue_id": 1})]
        if action == "edit":
            upsert_records(db, "issues", [_issue(rng, int(i), version)
                                          for i in rng.sample(live, 3)])
        elif action == "move":
            # An issue takes another's key (Jira moved one, the other's copy is stale).
            taker, taken = rng.sample(live, 2)
            key = db.jira_issues.find_one({"issue_id": taken})["key"]
            upsert_records(db, "issues", [_issue(rng, int(taker), version, key=key)])
        elif action == "rekey":
            # A project re-keyed (storage/copied_names.py): the key is rewritten in place,
            # stamped, its content_hash dropped; it may now be another issue's.
            taker, taken = rng.sample(live, 2)
            key = db.jira_issues.find_one({"issue_id": taken})["key"]
            db.jira_issues.update_one({"issue_id": taker}, {
                "$set": {"key": key, "synced_at": utc_now()}, "$unset": {"content_hash": ""}})
        elif action == "delete":
            mark_deleted_ids(db, "issues", CONNECTION, rng.sample(live, 2))
        elif action == "revive":
            upsert_records(db, "issues", [_issue(rng, rng.randrange(1, 61), version)])
        elif action == "drop_row":
            # A dimension row lost (deleted in Jira), possibly one the issues reference.
            entity = rng.choice(["statuses", "users", "priorities"])
            spec = entity_spec(entity)
            rows = db[spec.collection].distinct(spec.id_field, {"is_deleted": {"$ne": True}})
            if rows:
                mark_deleted_ids(db, entity, CONNECTION, [rng.choice(rows)])
        else:
            _dimensions(db)

        duplicates, read = duplicate_issue_values(db, CONNECTION)
        assert duplicates == duplicate_values(db, "jira_issues", CONNECTION, ("issue_id", "key"))
        reads.append(read)
        missing, read = _since_memo(db)
        expected = _expected_missing(db)
        assert {entity: missing[entity] for entity in expected} == expected, (step, action)
        reads.append(read)
    # Many evaluations read only what changed since, some every issue (a lost row: with the
    # re-keys in the mix, 29 of 60 at worst among these seeds).
    assert sum(read != EVERY_ISSUE for read in reads) > len(reads) // 3
    assert EVERY_ISSUE in reads[2:]


def test_a_duplicate_found_is_reported_until_it_is_gone(store: Store) -> None:
    rng = random.Random(7)
    db = store.db
    upsert_records(db, "issues", [_issue(rng, n, 1) for n in range(1, 11)])
    upsert_records(db, "issues", [_issue(rng, 1, 2, key="ACME-2")])  # 1 takes 2's key
    assert duplicate_issue_values(db, CONNECTION)[0]["key"] == ["ACME-2"]
    # Neither issue is written again: the memo's duplicate is read again, still there.
    upsert_records(db, "issues", [_issue(rng, 5, 3)])
    duplicates, read = duplicate_issue_values(db, CONNECTION)
    assert duplicates["key"] == ["ACME-2"] and read != EVERY_ISSUE
    upsert_records(db, "issues", [_issue(rng, 1, 4)])  # moved back to its own key
    assert duplicate_issue_values(db, CONNECTION)[0] == {"issue_id": [], "key": []}


def test_many_writes_since_or_no_memo_read_every_issue(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    db = store.db
    _dimensions(db)
    upsert_records(db, "issues", [_issue(rng, n, 1) for n in range(1, 21)])
    assert read_memo(db, CONNECTION, "no_duplicate_keys") is None
    assert duplicate_issue_values(db, CONNECTION)[1] == EVERY_ISSUE
    assert _since_memo(db)[1] == EVERY_ISSUE
    upsert_records(db, "issues", [_issue(rng, n, 2) for n in range(1, 6)])
    assert duplicate_issue_values(db, CONNECTION)[1].startswith("5 issue(s) changed since")
    assert _since_memo(db)[1] != EVERY_ISSUE
    # A full sync's worth of writes: one pass over every issue instead of the index.
    monkeypatch.setattr("jira_pipeline.storage.check_memo.MOST_WRITTEN", 4)
    assert MOST_WRITTEN > 4
    upsert_records(db, "issues", [_issue(rng, n, 3) for n in range(1, 6)])
    assert duplicate_issue_values(db, CONNECTION)[1] == EVERY_ISSUE
    assert _since_memo(db)[1] == EVERY_ISSUE


def _evaluated_with_the_margin(store: Store, monkeypatch: pytest.MonkeyPatch,
                               rng: random.Random, issues: int) -> Any:
    """A store of `issues` issues just written, both checks evaluated once (every issue read),
    with the production margin: every write falls within it."""
    monkeypatch.setattr("jira_pipeline.storage.check_memo.WRITTEN_MARGIN", timedelta(minutes=1))
    db = store.db
    _dimensions(db)
    upsert_records(db, "issues", [_issue(rng, n, 1) for n in range(1, issues + 1)])
    assert duplicate_issue_values(db, CONNECTION)[1] == EVERY_ISSUE
    assert _since_memo(db)[1] == EVERY_ISSUE
    return db


def test_within_the_margin_only_the_issues_changed_since_are_read_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full sync's writes all fall within the margin of its checks' evaluation: the next
    evaluation re-reads only what changed since (it read all of them before), a write of an
    issue's key in place (its content_hash dropped) included."""
    rng = random.Random(5)
    db = _evaluated_with_the_margin(store, monkeypatch, rng, 40)
    memo = read_memo(db, CONNECTION, "no_duplicate_keys")
    assert memo is not None and len(memo.read_recently) == 40
    assert duplicate_issue_values(db, CONNECTION)[1].startswith("0 issue(s) changed since")
    assert _since_memo(db)[1].startswith("0 issue(s) changed since")
    upsert_records(db, "issues", [_issue(rng, n, 2) for n in (3, 4)])
    taken = db.jira_issues.find_one({"issue_id": "7"})["key"]
    db.jira_issues.update_one({"issue_id": "8"}, {"$set": {"key": taken, "synced_at": utc_now()},
                                                  "$unset": {"content_hash": ""}})
    duplicates, read = duplicate_issue_values(db, CONNECTION)
    assert read.startswith("3 issue(s) changed since")
    assert duplicates["key"] == [taken]
    assert _since_memo(db)[1].startswith("3 issue(s) changed since")


@pytest.mark.parametrize("reader", ["jira_pipeline.assets.checks", "jira_pipeline.assets.sensors"])
def test_an_issue_gone_between_the_two_reads_is_not_remembered_as_read(
    store: Store, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """An issue tombstoned after the memo path listed it as changed but before it was read again
    (a census beside the check) must not be remembered as read: revived with the same content,
    it is judged again. Before, the memo kept the hash of the listing and never read it."""
    rng = random.Random(11)
    db = _evaluated_with_the_margin(store, monkeypatch, rng, 10)
    # Issue 20 takes issue 1's key and references a user that is not stored.
    late = _issue(rng, 20, 2, key=db.jira_issues.find_one({"issue_id": "1"})["key"])
    late["reporter_account_id"] = "ghost"
    upsert_records(db, "issues", [late])
    read_again = importlib.import_module(reader).live_issues_by_id

    def tombstoned_first(*args: Any, **kwargs: Any) -> Any:
        mark_deleted_ids(db, "issues", CONNECTION, ["20"])
        return read_again(*args, **kwargs)

    monkeypatch.setattr(f"{reader}.live_issues_by_id", tombstoned_first)
    if reader.endswith("checks"):
        duplicate_issue_values(db, CONNECTION)
    else:
        _since_memo(db)
    monkeypatch.setattr(f"{reader}.live_issues_by_id", read_again)
    upsert_records(db, "issues", [late])  # revived, the same content
    assert db.jira_issues.find_one({"issue_id": "20"})["is_deleted"] is False
    if reader.endswith("checks"):
        assert duplicate_issue_values(db, CONNECTION)[0]["key"] == [late["key"]]
    else:
        assert _since_memo(db)[0]["users"] == ["ghost"]
