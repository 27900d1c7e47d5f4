"""dagster.yaml's SQLite storage (jira_pipeline/instance_storage.py) keeps the event log's
connections open. It must stay Dagster's storage in every way a user can see: the files Dagster's
own `storage: sqlite:` wrote (the previous release's dagster.yaml) read the same, and the other
way round; other processes (the webserver, the daemon, run workers) see its writes and it sees
theirs while its connections stay open; threads share it; a wipe leaves no connection writing
to deleted files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from jira_pipeline.instance_storage import (
    MAX_OPEN_SHARDS,
    KeptConnectionsSqliteEventLogStorage,
)

REPO = Path(__file__).resolve().parents[1]
# The previous release's dagster.yaml said this of storage; the rest of the file is unchanged.
DAGSTER_SQLITE_STORAGE = "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\n"

# A materialization in a child process: another process writing the same DAGSTER_HOME.
CHILD = textwrap.dedent("""
    import dagster as dg

    @dg.asset(name="written_elsewhere")
    def written_elsewhere() -> int:
        return 1

    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([written_elsewhere], instance=instance).success
""")


@dg.asset
def counted() -> int:
    return 1


def instance_at(home: Path, config: str) -> dg.DagsterInstance:
    (home / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    yield tmp_path


def repo_config() -> str:
    return (REPO / "dagster.yaml").read_text()


def materialized_run(instance: dg.DagsterInstance, key: str) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.run_id if event is not None else None


def test_dagster_yaml_reads_and_writes_what_dagsters_own_sqlite_storage_does(home: Path) -> None:
    with instance_at(home, DAGSTER_SQLITE_STORAGE) as previous:
        assert type(previous.event_log_storage) is SqliteEventLogStorage
        before = dg.materialize([counted], instance=previous).run_id
        logs_before = len(previous.all_logs(before))

    with instance_at(home, repo_config()) as current:
        assert isinstance(current.event_log_storage, KeptConnectionsSqliteEventLogStorage)
        assert [run.run_id for run in current.get_runs()] == [before]
        assert len(current.all_logs(before)) == logs_before > 0
        assert materialized_run(current, "counted") == before
        after = dg.materialize([counted], instance=current).run_id

    # Back to Dagster's own storage: nothing the current one wrote is lost to it.
    with instance_at(home, DAGSTER_SQLITE_STORAGE) as previous:
        assert {run.run_id for run in previous.get_runs()} == {before, after}
        assert materialized_run(previous, "counted") == after
        assert len(previous.all_logs(after)) == logs_before


def test_open_connections_see_other_processes_writes_and_they_see_ours(home: Path) -> None:
    with instance_at(home, repo_config()) as current:
        ours = dg.materialize([counted], instance=current).run_id
        assert materialized_run(current, "written_elsewhere") is None  # connections now open
        subprocess.run([sys.executable, "-c", CHILD], check=True, env=os.environ.copy())
        theirs = materialized_run(current, "written_elsewhere")
        assert theirs is not None and theirs != ours
        assert current.get_run_by_id(theirs) is not None
        assert any(entry.dagster_event and entry.dagster_event.is_step_success
                   for entry in current.all_logs(theirs))
        # A stock reader (the webserver of an older install, say) sees this process's run.
        with dg.DagsterInstance.from_config(str(home)) as reader:
            assert materialized_run(reader, "counted") == ours


def test_threads_share_the_kept_connections(home: Path) -> None:
    with instance_at(home, repo_config()) as current:
        errors: list[BaseException] = []

        def report(thread: int) -> None:
            try:
                for n in range(20):
                    current.report_runless_asset_event(
                        dg.AssetMaterialization(f"from_thread_{thread}", metadata={"n": n})
                    )
            except BaseException as error:  # asserted below, on the test thread
                errors.append(error)

        threads = [threading.Thread(target=report, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for t in range(4):
            records = current.fetch_materializations(dg.AssetKey(f"from_thread_{t}"), limit=100)
            values = [r.asset_materialization.metadata["n"].value  # type: ignore[union-attr]
                      for r in records.records]
            assert sorted(int(v) for v in values) == list(range(20))  # type: ignore[arg-type]


def test_a_wipe_leaves_no_connection_to_deleted_files(home: Path) -> None:
    with instance_at(home, repo_config()) as current:
        dg.materialize([counted], instance=current)
        storage = current.event_log_storage
        assert isinstance(storage, KeptConnectionsSqliteEventLogStorage)
        storage.wipe()
        after = dg.materialize([counted], instance=current).run_id
    # What was written after the wipe is in the files on disk, where a new reader finds it.
    with instance_at(home, DAGSTER_SQLITE_STORAGE) as reader:
        assert materialized_run(reader, "counted") == after
        assert len(reader.all_logs(after)) > 0


def test_the_engines_kept_are_bounded_and_reopen(home: Path) -> None:
    with instance_at(home, repo_config()) as current:
        runs = [dg.materialize([counted], instance=current).run_id
                for _ in range(MAX_OPEN_SHARDS + 2)]
        storage = current.event_log_storage
        assert isinstance(storage, KeptConnectionsSqliteEventLogStorage)
        assert len(storage._engines) <= MAX_OPEN_SHARDS
        # The first run's engine was closed to stay within the bound; its log reads as written.
        assert runs[0] not in storage._engines
        assert any(entry.dagster_event and entry.dagster_event.is_step_success
                   for entry in current.all_logs(runs[0]))


def test_a_watched_run_sees_each_event_a_kept_connection_writes(home: Path) -> None:
    """The webserver's live run log: Dagster watches the run's file for changes, and a writer
    that keeps its connection open changes only the file's WAL until a checkpoint."""
    run_id = "0123456789abcdef0123456789abcdef"
    writer = KeptConnectionsSqliteEventLogStorage(str(home / "events"))
    watcher = KeptConnectionsSqliteEventLogStorage(str(home / "events"))
    seen: list[str] = []
    writer.store_event(_log_line(run_id, "first"))  # the run's file exists, as when it starts
    watcher.watch(run_id, None, lambda entry, cursor: seen.append(entry.user_message))
    try:
        for n in range(5):
            writer.store_event(_log_line(run_id, f"event {n}"))
            deadline = time.monotonic() + 20
            while f"event {n}" not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f"event {n}" in seen, seen
    finally:
        watcher.dispose()
        writer.dispose()


def _log_line(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id=run_id,
                         timestamp=time.time(), step_key=None, job_name="job", dagster_event=None)
