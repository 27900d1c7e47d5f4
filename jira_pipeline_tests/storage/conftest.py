"""A fresh database per test: always in the embedded store, and on a real server when
MONGODB_TEST_URI is set (same tests, same assertions)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import format_jira_datetime

SERVER_URI = os.environ.get("MONGODB_TEST_URI")
T0 = datetime(2026, 1, 10, 9, 30, tzinfo=UTC)


@dataclass
class Store:
    """One test's database and how to reach it again (from another process or a resource)."""

    db: Database
    uri: str | None  # None: embedded
    folder: Path | None  # the embedded store's files

    @property
    def name(self) -> str:
        return self.db.name

    def resource(self) -> MongoResource:
        return MongoResource(
            uri=self.uri, database=self.name, folder=str(self.folder) if self.folder else None
        )


@pytest.fixture(params=["embedded", "server"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    # Tests choose their store explicitly; an ambient MONGODB_URI must not redirect them.
    monkeypatch.delenv("MONGODB_URI", raising=False)
    name = f"jira_test_{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":
        folder = tmp_path / "mongo"
        client = get_mongo_client(None, folder=folder)
        yield Store(client.get_database(name), None, folder)
        client.close()
        return
    if not SERVER_URI:
        pytest.skip("MONGODB_TEST_URI is not set: no real MongoDB to test against")
    client = get_mongo_client(SERVER_URI)
    try:
        yield Store(client.get_database(name), SERVER_URI, None)
    finally:
        client.drop_database(name)
        client.close()


def issue(
    issue_id: str | int,
    updated: datetime | str = T0,
    *,
    connection_id: str = "conn-1",
    summary: str | None = None,
    project_key: str = "ACME",
    **fields: Any,
) -> dict[str, Any]:
    """An issue record as the Jira client produces it (key fields plus the raw JSON)."""
    issue_id = str(issue_id)
    updated_text = updated if isinstance(updated, str) else format_jira_datetime(updated)
    summary = summary if summary is not None else f"Issue {issue_id}"
    record: dict[str, Any] = {
        "connection_id": connection_id,
        "issue_id": issue_id,
        "key": f"{project_key}-{issue_id}",
        "project_id": "10000",
        "project_key": project_key,
        "summary": summary,
        "issue_type": "Task",
        "status_id": "1",
        "status_name": "To Do",
        "status_category": "To Do",
        "priority": "Medium",
        "assignee_account_id": None,
        "reporter_account_id": "user-1",
        "labels": [],
        "created": T0 - timedelta(days=1),
        "updated": updated,
        "resolution_date": None,
        "parent_key": None,
        "parent_id": None,
        "raw": {"id": issue_id, "fields": {"summary": summary, "updated": updated_text}},
    }
    record.update(fields)
    return record
