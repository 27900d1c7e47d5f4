"""The repository's Dagster instance files, and a real PostgreSQL server for the Postgres one.

`dagster.yaml` keeps run, event-log and schedule storage in SQLite under DAGSTER_HOME;
`dagster.postgres.yaml` keeps them in the PostgreSQL database DAGSTER_PG_URL names. Tests that
take `instance_config` run once per file; the Postgres run is skipped, saying why, unless
DAGSTER_PG_URL is set (`.ci/run` starts a server and sets it: `.ci/postgres.sh`). Each test gets
a database of its own on that server, created empty and dropped afterwards, so no test sees
another's runs, pools or cursors.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
PG_URL_VARIABLE = "DAGSTER_PG_URL"
SQLITE_FILE = "dagster.yaml"
POSTGRES_FILE = "dagster.postgres.yaml"
NO_SERVER = (
    f"{PG_URL_VARIABLE} is not set: the Postgres-backed instance ({POSTGRES_FILE}) needs a "
    "PostgreSQL server (`source .ci/postgres.sh` starts one on loopback, as .ci/run does)"
)

requires_postgres = pytest.mark.skipif(not os.environ.get(PG_URL_VARIABLE), reason=NO_SERVER)

# Parameters for tests that must hold on either instance file.
INSTANCE_FILES = [
    pytest.param(SQLITE_FILE, id="sqlite"),
    pytest.param(POSTGRES_FILE, id="postgres", marks=requires_postgres),
]


def read_instance_file(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return config


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on DAGSTER_PG_URL's server; dropped on exit."""
    server_url = os.environ.get(PG_URL_VARIABLE)
    if not server_url:
        pytest.skip(NO_SERVER)
    server = make_url(server_url)
    if server.drivername == "postgresql":
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; dagster-postgres brings psycopg2.
        server = server.set(drivername="postgresql+psycopg2")
    name = f"jira_pipeline_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a pooled connection Dagster left open must not keep the database alive.
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def instance_overrides(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The instance file `name` as Dagster reads it; for the Postgres file, DAGSTER_PG_URL points
    at a fresh database for as long as the context is open (the file itself is used unchanged)."""
    config = read_instance_file(name)
    if "postgres" not in config.get("storage", {}):
        yield config
        return
    with fresh_postgres_database() as url, monkeypatch.context() as patch:
        patch.setenv(PG_URL_VARIABLE, url)
        yield config
