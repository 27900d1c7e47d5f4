"""dagster.postgres.yaml is dagster.yaml with Postgres storage: the same run queue, concurrency
limits and run monitoring, so moving an instance to PostgreSQL changes where state lives and
nothing about how runs are scheduled. Both files load as valid Dagster instance config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from jira_pipeline_tests.postgres import (
    PG_URL_VARIABLE,
    POSTGRES_FILE,
    SQLITE_FILE,
    fresh_postgres_database,
    read_instance_file,
    requires_postgres,
)


def test_the_postgres_variant_differs_from_dagster_yaml_only_in_storage() -> None:
    sqlite, postgres = read_instance_file(SQLITE_FILE), read_instance_file(POSTGRES_FILE)
    assert {k: v for k, v in sqlite.items() if k != "storage"} == \
        {k: v for k, v in postgres.items() if k != "storage"}
    # What both files must hold, so the comparison above compares something.
    for section in ("run_coordinator", "concurrency", "run_monitoring"):
        assert postgres[section], section
    assert postgres["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert postgres["run_monitoring"]["enabled"] is True
    # Dagster's SQLite storage under DAGSTER_HOME, with the event log's connections kept open.
    assert sqlite["storage"] == {"custom": {
        "module": "jira_pipeline.instance_storage", "class": "JiraPipelineSqliteStorage",
        "config": {"base_dir": {"env": "DAGSTER_HOME"}}}}
    # The URL (a secret: it may carry a password) comes from the environment, never the file.
    assert postgres["storage"] == {"postgres": {"postgres_url": {"env": PG_URL_VARIABLE}}}


@pytest.mark.parametrize("name", [SQLITE_FILE, POSTGRES_FILE])
def test_each_instance_file_is_valid_dagster_config(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PG_URL_VARIABLE, "postgresql://nobody@127.0.0.1:1/never_contacted")
    (tmp_path / "dagster.yaml").write_text((Path(__file__).parents[1] / name).read_text())
    config, _custom_class = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1


@requires_postgres
def test_the_postgres_instance_keeps_runs_in_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance built from dagster.postgres.yaml stores its runs in DAGSTER_PG_URL's database,
    where a second instance (another process, another machine) reads them."""
    from dagster_postgres import PostgresRunStorage

    overrides: dict[str, Any] = read_instance_file(POSTGRES_FILE)
    with fresh_postgres_database() as url:
        monkeypatch.setenv(PG_URL_VARIABLE, url)
        with dg.instance_for_test(overrides=overrides) as writer:
            assert isinstance(writer.run_storage, PostgresRunStorage)

            @dg.op
            def hello() -> int:
                return 1

            @dg.job
            def hello_job() -> None:
                hello()

            result = hello_job.execute_in_process(instance=writer)
            assert result.success
        with dg.instance_for_test(overrides=overrides) as reader:
            run = reader.get_run_by_id(result.run_id)
            assert run is not None and run.job_name == "hello_job"
            assert run.is_success
