"""Every variable of the README's configuration table, given a malformed value, stops the code
location from loading with a message that names that variable."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pymongo.database import Database

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline_tests.resilience.conftest import REPO, SyncTarget, this_hour

# A malformed value for each variable, and what else it needs set to be read at all.
MALFORMED: dict[str, tuple[str, dict[str, str]]] = {
    "JIRA_BASE_URL": ("acme.atlassian.net/jira", {}),
    "JIRA_EMAIL": ("   ", {}),
    "JIRA_API_TOKEN": ("   ", {}),
    "JIRA_PAT": ("   ", {"JIRA_EMAIL": "", "JIRA_API_TOKEN": ""}),
    "JIRA_OAUTH_CLIENT_ID": ("   ", {"JIRA_OAUTH_CLIENT_SECRET": "some-secret"}),
    "JIRA_OAUTH_CLIENT_SECRET": ("   ", {"JIRA_OAUTH_CLIENT_ID": "some-client"}),
    "JIRA_CLOUD_ID": ("not a cloud id", {"JIRA_OAUTH_CLIENT_ID": "some-client",
                                         "JIRA_OAUTH_CLIENT_SECRET": "some-secret"}),
    "JIRA_PIPELINE_FERNET_KEYS": ("not-a-fernet-key", {}),
    "MONGODB_URI": ("http://127.0.0.1:27017", {}),
    "MONGODB_DATABASE": ("jira/prod", {}),
    "JIRA_SYNC_START_DATE": ("2024-13-45", {}),
    "JIRA_PROJECTS": ("ENG, not a key!", {}),
    "JIRA_MIN_REQUEST_INTERVAL_MS": ("fast", {}),
    "JIRA_MAX_IN_FLIGHT": ("0", {}),
    "JIRA_TIMEOUT_S": ("-1", {}),
    "JIRA_RETRY_ATTEMPTS": ("many", {}),
    "JIRA_RETRY_BASE_S": ("one", {}),
    "JIRA_RETRY_CAP_S": ("-60", {}),
    "JIRA_LOOKBACK_MINUTES": ("ten", {}),
    "JIRA_SCHEDULE_CRON": ("every day at two", {}),
    "JIRA_SENSOR_INTERVAL_S": ("1", {}),
    "JIRA_FRESHNESS_TOLERANCE_MINUTES": ("0", {}),
    "JIRA_CONSISTENCY_LAG_MINUTES": ("fifteen", {}),
}


def readme_configuration_variables() -> list[str]:
    """The variables named in the first column of the README's configuration table."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])]


def test_every_variable_of_the_readme_table_has_a_malformed_case_here() -> None:
    assert sorted(readme_configuration_variables()) == sorted(MALFORMED)


@pytest.mark.parametrize("variable", sorted(MALFORMED))
def test_malformed_variable_stops_loading_with_a_message_naming_it(
    variable: str,
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = point_at(fake_jira_factory(issues=10, days=1, now=this_hour()))
    if variable == "JIRA_PIPELINE_FERNET_KEYS":
        # The keys are read once some connection's tokens are stored.
        monkeypatch.setenv(variable, TokenCipher.generate_key())
        ConnectionRepository(open_store(target.store_folder)).add(
            "acme", target.fake.base_url, auth_type="oauth", cloud_id=target.fake.cloud_id,
            access_token="an-access-token", refresh_token="a-refresh-token",
        )
        monkeypatch.setenv("JIRA_OAUTH_CLIENT_ID", target.fake.config.oauth_client_id)
        monkeypatch.setenv("JIRA_OAUTH_CLIENT_SECRET", target.fake.config.oauth_client_secret)
    value, companions = MALFORMED[variable]
    for name, companion in companions.items():
        monkeypatch.setenv(name, companion)
    monkeypatch.setenv(variable, value)

    with pytest.raises(Exception) as failure:
        build_definitions()

    assert variable in str(failure.value)
