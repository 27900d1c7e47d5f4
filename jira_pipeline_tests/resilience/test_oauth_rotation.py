"""OAuth access tokens that expire every few seconds during a backfill: the sync refreshes, each
rotated refresh token is stored encrypted before use, and the replaced one is dead."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from pymongo.database import Database

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline.timeutil import utc_now
from jira_pipeline_tests.fakejira.oauth_flow import exchange_code, token_request
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    files_holding,
    run_metadata,
    stored_versions,
    this_hour,
)

TOKEN_TTL_S = 5


def test_backfill_outlives_five_second_access_tokens_and_persists_each_rotation(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake = fake_jira_factory(issues=600, days=3, now=this_hour(), token_ttl=TOKEN_TTL_S)
    target = point_at(fake, basic_auth=False)
    # Spacing stretches the backfill over several token lifetimes.
    monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "400")
    monkeypatch.setenv("JIRA_OAUTH_CLIENT_ID", fake.config.oauth_client_id)
    monkeypatch.setenv("JIRA_OAUTH_CLIENT_SECRET", fake.config.oauth_client_secret)
    monkeypatch.setenv("JIRA_OAUTH_ORIGIN", fake.base_url)
    fernet_key = TokenCipher.generate_key()
    monkeypatch.setenv("JIRA_PIPELINE_FERNET_KEYS", fernet_key)
    with httpx.Client(base_url=fake.base_url) as http:
        granted = exchange_code(http, fake)
    db = open_store(target.store_folder)
    connections = ConnectionRepository(db)
    connection = connections.add(
        "acme", fake.base_url, auth_type="oauth", cloud_id=fake.cloud_id,
        access_token=granted["access_token"], refresh_token=granted["refresh_token"],
        token_expires_at=utc_now() + timedelta(seconds=TOKEN_TTL_S),
    )

    with dg.DagsterInstance.get() as instance:  # on disk in DAGSTER_HOME, scanned below
        result = target.sync("jira_sites_job", instance=instance)  # acme is the one registered site

    assert result.success
    refreshes = sum(
        run_metadata(result, f"acme__{name}")["token_refreshes"]
        for name in ("jira_projects", "jira_statuses", "jira_users", "jira_issues")
    )
    assert refreshes >= 2  # expired mid-run, not only before the first request
    assert stored_versions(db) == fake_issue_versions(fake)
    stored = connections.tokens(connection.id)
    assert stored.refresh_token not in (None, granted["refresh_token"])
    document = db["jira_connections"].find_one({"id": connection.id})
    assert document is not None
    assert stored.refresh_token is not None
    assert stored.refresh_token not in repr(document)
    assert stored.access_token is not None and stored.access_token not in repr(document)
    with httpx.Client(base_url=fake.base_url) as http:
        replaced = token_request(http, fake, grant_type="refresh_token",
                                 refresh_token=granted["refresh_token"])
        assert replaced.status_code in (400, 401, 403)
        current = token_request(http, fake, grant_type="refresh_token",
                                refresh_token=stored.refresh_token or "")
        assert current.status_code == 200

    secrets = (granted["access_token"], granted["refresh_token"], stored.access_token,
               stored.refresh_token, fernet_key, fake.config.oauth_client_secret)
    captured = capfd.readouterr()
    assert files_holding(target.home, secrets) == []
    assert [s for s in secrets if s and s in captured.out + captured.err] == []
