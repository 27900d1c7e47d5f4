"""The Dagster instance's SQLite storage, with the event log's connections kept open.

dagster.yaml names `JiraPipelineSqliteStorage` (`storage: custom:`). It is Dagster's own
`DagsterSqliteStorage`, the same files in the same places under DAGSTER_HOME, except that the
event log keeps one SQLAlchemy engine, and so one open connection, per database file.

Why: Dagster's `SqliteEventLogStorage` builds an engine for every event it writes and disposes
of it afterwards. Each event therefore pays for the engine, for compiling its INSERT again (the
compiled-statement cache lives on the engine) and for closing SQLite's last connection to the
file, which checkpoints its WAL. A partitioned run writes an `ASSET_MATERIALIZATION_PLANNED`
event per asset and partition before its first step starts (the dimensions included, since a
range run plans every asset for each of its partitions): about 460 such events for a 33-day
sync, about 10 ms each on the 2-core machine, and another 4 ms for every log line, output
and check result. With the engines kept, the same events cost 2.4 ms and 0.8 ms
(`benchmarks/event_log_bench.py` prints both).

What stays as Dagster wrote it: the schema, the shard layout (one file per run, an index file),
the locking (`_db_lock` serializes this process's threads; SQLite's own locks and busy timeout
serialize processes) and every query. An open connection outside a transaction holds no lock,
so the webserver, the daemon and run workers share the files as before.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

# Engines kept at once: this process's index file and the runs it is writing or reading. A
# webserver that shows many runs' logs reopens the least recently used beyond these.
MAX_OPEN_SHARDS = 16


class KeptConnectionsSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, with an engine kept per shard file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Set before Dagster's constructor, which may already connect (a new index file).
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> KeptConnectionsSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                # A forked child must not use its parent's open connections: drop them unclosed
                # (closing would checkpoint the parent's files from here).
                for inherited in self._engines.values():
                    inherited.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            kept = self._engines.get(shard)
            if kept is not None:
                self._engines.move_to_end(shard)
                return kept
            # SQLAlchemy's default pool for a SQLite file: connections are returned to it, not
            # closed, and may be used from any thread (the event-log watcher's among them).
            engine = create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            while len(self._engines) > MAX_OPEN_SHARDS:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's `_connect`, with the engine kept rather than built and disposed each time.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                sqlite = conn.connection.dbapi_connection
                changes_before = sqlite.total_changes if sqlite is not None else 0
                with conn.begin():
                    yield conn
                wrote = sqlite is not None and sqlite.total_changes != changes_before
            if wrote and shard != INDEX_SHARD_NAME:
                self._touch(shard)

    def _touch(self, shard: str) -> None:
        # Dagster's watch of a run (the webserver's live log, the CLI's) waits for the run's
        # `.db` file to change. In WAL mode a commit writes only the `-wal` file; the `.db`
        # changed at every event because Dagster's closing of the last connection checkpointed
        # it. With the connection kept, its times are set after each committed write instead,
        # so every watcher (this class or Dagster's own, in any process) hears of it then.
        try:
            os.utime(self.path_for_shard(shard))
        except FileNotFoundError:
            pass  # deleted meanwhile: nobody watches it

    def _close_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        # The files are deleted: connections kept to them would write where nothing reads.
        # Closed again after: another thread may have opened one between the close and the
        # deletion.
        self._close_engines()
        super().wipe()
        self._close_engines()

    def upgrade(self) -> None:
        super().upgrade()
        self._close_engines()

    def dispose(self) -> None:
        super().dispose()
        self._close_engines()


class JiraPipelineSqliteStorage(DagsterSqliteStorage):
    """`DagsterSqliteStorage` (runs, event log, schedules under `base_dir`) whose event log is
    `KeptConnectionsSqliteEventLogStorage`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = KeptConnectionsSqliteEventLogStorage(
            _event_logs_directory(base_dir)
        )

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> JiraPipelineSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
