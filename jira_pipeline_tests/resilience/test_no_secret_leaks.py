"""After a full `jira-pipeline demo`, no secret appears in its output, in Dagster's run and event
storage, in logs, or in the store's files (their raw bytes are scanned)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jira_pipeline.fakejira import FakeJiraConfig
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline_tests.resilience.conftest import REPO, files_holding


def test_demo_leaves_no_secret_in_output_event_log_run_config_or_store_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_folder = tmp_path / "demo"
    fernet_key = TokenCipher.generate_key()
    fake = FakeJiraConfig()  # the demo's fake Jira runs with these credentials
    basic = base64.b64encode(f"{fake.email}:{fake.api_token}".encode()).decode()
    secrets = (fake.api_token, basic, fake.pat, fake.oauth_client_secret, fernet_key)
    environment = {**os.environ, "JIRA_PIPELINE_FERNET_KEYS": fernet_key}
    environment.pop("DAGSTER_HOME", None)

    demo = subprocess.run(
        [sys.executable, "-m", "jira_pipeline.cli", "demo", "--dir", str(demo_folder),
         "--issues", "150", "--days", "3"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=240, check=False,
    )

    assert demo.returncode == 0, demo.stdout + demo.stderr
    dagster_home = demo_folder / "dagster_home"
    assert list(dagster_home.glob("history/runs/*.db")), "the demo's event log was not on disk"
    assert list((dagster_home / "mongo").rglob("jira_issues")), "the store was not on disk"
    # The scan reads what was stored: the site's URL sits in every issue's `self` link.
    port = json.loads((demo_folder / "demo.json").read_text())["port"]
    assert files_holding(demo_folder, [f"http://127.0.0.1:{port}"])
    assert files_holding(demo_folder, secrets) == []
    output = demo.stdout + demo.stderr
    assert [n for n, secret in enumerate(secrets) if secret in output] == []
