"""What a newcomer meets first: `jira-pipeline demo`, `dev --demo`, `where`, `fake-jira --help`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from jira_pipeline.cli import main
from jira_pipeline.demo import DemoRecord, DemoSite, demo_environment
from jira_pipeline.demo_dev import LOCATION_NAME, workspace_yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_VARIABLES = ("DAGSTER_HOME", "JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN",
                  "JIRA_SYNC_START_DATE", "MONGODB_URI", "JIRA_PAT", "JIRA_OAUTH_CLIENT_ID",
                  "JIRA_OAUTH_CLIENT_SECRET", "JIRA_PROJECTS", "JIRA_CLOUD_ID")


@pytest.fixture
def restored_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """demo_environment sets variables for the process: put them back after the test."""
    for name in DEMO_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_dev_demo_serves_the_data_the_demo_stored_with_the_same_clock(
    tmp_path: Path, restored_environment: None
) -> None:
    site = DemoSite(tmp_path / "demo")
    site.prepare(fresh=True)
    record = DemoRecord(issues=40, days=3)
    with demo_environment(site, record) as demo:
        demo_issues = demo.admin.issues()
        demo_start, demo_url = demo.site.start, demo.base_url
        demo_sync_start = os.environ["JIRA_SYNC_START_DATE"]
    stored = json.loads(site.record_file.read_text())
    assert stored["now"] == demo_start.isoformat()

    time.sleep(1.1)  # a restart a moment later: an unpinned clock would move every `updated`
    with demo_environment(site, site.record()) as dev:
        assert dev.site.start == demo_start
        assert dev.base_url == demo_url  # same site URL, so the same connection id
        assert dev.admin.issues() == demo_issues
        assert os.environ["JIRA_SYNC_START_DATE"] == demo_sync_start


def test_the_demos_partitions_start_where_its_data_starts(
    tmp_path: Path, restored_environment: None
) -> None:
    site = DemoSite(tmp_path / "demo")
    site.prepare(fresh=True)
    record = DemoRecord(issues=10, days=7, now="2025-06-30T12:00:00+00:00")
    with demo_environment(site, record) as fake:
        assert fake.admin.now().date().isoformat() == "2025-06-30"
        assert os.environ["JIRA_SYNC_START_DATE"] == "2025-06-23"
        assert os.environ["DAGSTER_HOME"] == str(site.dagster_home.resolve())


def test_dev_and_workspace_yaml_give_the_code_location_one_name(tmp_path: Path) -> None:
    [from_repo] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    [from_dev] = yaml.safe_load(workspace_yaml(tmp_path))["load_from"]
    assert from_dev["python_module"]["location_name"] == LOCATION_NAME == "jira_pipeline"
    assert from_repo["python_module"]["location_name"] == LOCATION_NAME
    assert from_dev["python_module"]["module_name"] == from_repo["python_module"]["module_name"]
    assert from_dev["python_module"]["working_directory"] == str(tmp_path)


# A stand-in for `dagster dev`: it starts a child of its own (as dagster dev starts the webserver
# and daemon), records both pids, and runs until it is signalled.
_FAKE_DAGSTER_DEV = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1], "w") as out:
    out.write(f"{__import__('os').getpid()} {child.pid}")
time.sleep(600)
"""

_WRAPPER = """
import sys
from jira_pipeline.demo_dev import run_in_own_group
sys.exit(run_in_own_group([sys.executable, "-c", sys.argv[1], sys.argv[2]]))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; only its parent has not collected it yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_until(predicate, patience_s: float = 60.0) -> bool:
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stopping_jira_pipeline_dev_stops_everything_it_started(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    pids_file = tmp_path / "pids"
    wrapper = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, _FAKE_DAGSTER_DEV, str(pids_file)], cwd=REPO,
    )
    try:
        assert _wait_until(lambda: pids_file.exists() and pids_file.read_text().strip() != "")
        dev, server = (int(p) for p in pids_file.read_text().split())
        assert _alive(dev) and _alive(server)

        wrapper.send_signal(stop_signal)
        wrapper.wait(timeout=60)

        assert _wait_until(lambda: not _alive(dev) and not _alive(server)), (
            "a process of `jira-pipeline dev` outlived it"
        )
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        started = pids_file.read_text().split() if pids_file.exists() else []
        for pid in map(int, started):  # what a failed stop left behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_fake_jira_help_shows_the_default_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fake-jira", "--help"])
    assert exited.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps long lines at hyphens
    for credential in ("demo@example.com", "demo-token", "demo-pat", "demo-client-id",
                       "demo-client-secret"):
        assert f"(default{credential})" in text


def test_where_names_the_embedded_store_a_query_would_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["where"]) == 0
    out = capsys.readouterr().out
    assert f"embedded store: {tmp_path.resolve() / '.jira_pipeline' / 'mongo'}" in out
    assert "DAGSTER_HOME is not set" in out and "nothing stored here yet" in out

    home = tmp_path / "home"
    (home / "mongo").mkdir(parents=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["where"]) == 0
    out = capsys.readouterr().out
    assert f"embedded store: {home.resolve() / 'mongo'}\n" in out
    assert f"DAGSTER_HOME={home.resolve()} " in out


def test_where_names_a_server_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://reader:hunter2@db.example.com:27017/")
    assert main(["where"]) == 0
    out = capsys.readouterr().out
    assert "mongodb://reader:***@db.example.com:27017/" in out and "hunter2" not in out


def test_the_demo_prints_a_short_summary_and_where_its_store_is(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    environment = {k: v for k, v in os.environ.items() if k not in DEMO_VARIABLES}
    demo = subprocess.run(
        [sys.executable, "-m", "jira_pipeline.cli", "demo", "--dir", str(folder),
         "--issues", "30", "--days", "2"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=280, check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    # A summary, not Dagster's event log (over a hundred lines): a row per collection (22)
    # and a dozen lines of header, checks and hints.
    assert len(lines) < 40, demo.stdout
    assert "DEBUG" not in demo.stdout + demo.stderr
    assert any(line.startswith("asset checks: ") and "FAILED" not in line for line in lines)
    store = (folder / "dagster_home" / "mongo").resolve()
    assert f"The embedded store is in {store}; query it with" in demo.stdout
    assert store.is_dir()

    where = subprocess.run(
        [sys.executable, "-m", "jira_pipeline.cli", "where", "--demo", "--dir", str(folder)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60, check=True,
    )
    assert str(store) in where.stdout and "nothing yet" not in where.stdout
