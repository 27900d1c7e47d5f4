"""`jira-pipeline dev` runs `dg dev` in the project (and `dagster dev` elsewhere): the UI serves
the code location `jira_pipeline` with every asset, partition, check, schedule and sensor, the
daemon runs, and stopping it stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psutil
import pytest

from jira_pipeline.demo_dev import PROJECT_ROOT, dev_command
from jira_pipeline.fakejira import FakeJiraHandle

REPO = Path(__file__).resolve().parents[2]
JIRA_PIPELINE = Path(sys.executable).with_name("jira-pipeline")
UI_PATIENCE_S = 240.0


def test_dev_runs_dg_dev_in_the_project_and_dagster_dev_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "workspace.yaml"
    monkeypatch.chdir(REPO)
    in_project = dev_command(3000, ["--verbose"], workspace)
    assert PROJECT_ROOT == REPO
    assert Path(in_project[0]).name == "dg"
    assert in_project[1:] == ["dev", "--target-path", str(REPO), "-p", "3000", "--verbose"]

    monkeypatch.chdir(tmp_path)  # `.env` and ./.jira_pipeline are read from here: dagster dev
    elsewhere = dev_command(3000, [], workspace)
    assert elsewhere == [sys.executable, "-m", "dagster", "dev", "-w", str(workspace),
                         "-p", "3000"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["data"]


_STATE = """{
  workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename }
  } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
}"""


_SHOWN = """{
  assetNodes {
    assetKey { path } groupName isPartitioned
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
  repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    schedules { name scheduleState { status } }
    sensors { name sensorState { status } }
  } } }
}"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_jira_pipeline_dev_serves_every_asset_check_schedule_and_sensor_and_runs_the_daemon(
    fake_jira: FakeJiraHandle, site_env: Callable[..., date], tmp_path: Path
) -> None:
    site_env(fake_jira, days=3)
    port = _free_port()
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen([str(JIRA_PIPELINE), "dev", "--port", str(port)], cwd=REPO,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = [dev.pid]
    try:
        state: dict = {}
        deadline = time.monotonic() + UI_PATIENCE_S
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                state = _graphql(port, _STATE)
            except OSError:
                time.sleep(1.0)
                continue
            entries = state["workspaceOrError"]["locationEntries"]
            daemons = state["instance"]["daemonHealth"]["allDaemonStatuses"]
            if (entries and entries[0]["loadStatus"] == "LOADED"
                    and any(d["daemonType"] == "SENSOR" and d["healthy"] for d in daemons)):
                break
            time.sleep(1.0)
        output = log.read_text()
        assert state, output[-3000:]
        assert state["workspaceOrError"]["locationEntries"] == [
            {"name": "jira_pipeline", "loadStatus": "LOADED",
             "locationOrLoadError": {"__typename": "RepositoryLocation"}}
        ], output[-3000:]
        daemons = state["instance"]["daemonHealth"]["allDaemonStatuses"]
        assert {"SCHEDULER", "SENSOR"} <= {d["daemonType"] for d in daemons if d["healthy"]}
        # The UI shows every asset (the issues partitioned), check, schedule and sensor.
        shown = _graphql(port, _SHOWN)
        nodes = {"/".join(n["assetKey"]["path"]): n for n in shown["assetNodes"]}
        assert set(nodes) >= {"jira_projects", "jira_statuses", "jira_users", "jira_issues",
                              "jira_issue_daily_summary"}
        assert {n["groupName"] for n in nodes.values()} == {"jira"}
        assert nodes["jira_issues"]["isPartitioned"]
        checks = {c["name"] for c in nodes["jira_issues"]["assetChecksOrError"]["checks"]}
        assert checks >= {"matches_jira_count", "no_duplicate_keys", "references_present",
                          "fresh", "no_sync_errors"}
        [repository] = shown["repositoriesOrError"]["nodes"]
        assert repository["location"]["name"] == "jira_pipeline"
        assert [(s["name"], s["scheduleState"]["status"]) for s in repository["schedules"]] == [
            ("jira_daily_schedule", "RUNNING")]
        assert [(s["name"], s["sensorState"]["status"]) for s in repository["sensors"]] == [
            ("jira_refresh_sensor", "RUNNING")]
        assert "running: dg dev --target-path" in output
        assert "SupersessionWarning" not in output
        assert "does not match the virtual environment" not in output

        started += [child.pid for child in psutil.Process(dev.pid).children(recursive=True)]
        assert len(started) >= 4  # jira-pipeline, dg dev, webserver, daemon (and code server)
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=120)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in started), "a process of jira-pipeline dev outlived it"
    finally:
        for pid in started:  # what a failed stop left behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        dev.wait()
