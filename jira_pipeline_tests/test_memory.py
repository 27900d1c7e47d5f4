"""Memory bounds of a run that can be checked without timing anything: what a run imports and
how many records a write holds at once (`benchmarks/memory_bench.py` prints the figures)."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from jira_pipeline.jira import BasicAuth, JiraClient, RateLimiter
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.partitioned_writes import HELD_BATCHES, upsert_by_partition
from jira_pipeline.storage.upserts import DEFAULT_BATCH_SIZE, upsert_records
from jira_pipeline_tests.conftest import FakeJiraHandle, python_output
from jira_pipeline_tests.jira.test_client import WHOLE_DATASET
from jira_pipeline_tests.storage.conftest import T0, issue


def test_storage_layer_and_client_load_without_pandas() -> None:
    # pandas (with numpy) is about 45 MB of a run's RSS; only a DataFrame input needs it.
    code = (
        "import sys\n"
        "import jira_pipeline.storage.io_manager, jira_pipeline.storage.upserts\n"
        "import jira_pipeline.jira.client, jira_pipeline.assets.streams\n"
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))\n"
    )
    assert python_output(code).strip() == "[]"


def test_the_derived_tables_are_computed_without_pandas() -> None:
    """Time in status and the sprint report, the sync job's last pandas users, count in plain
    Python: a run of the job never imports it (+43 MB RSS)."""
    code = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from jira_pipeline.history.time_in_status import time_in_status_rows\n"
        "from jira_pipeline.history.sprints import sprint_report_rows\n"
        "day = datetime(2026, 3, 1, tzinfo=UTC)\n"
        "rows = time_in_status_rows([{'issue_id': '1', 'status_id': '3', 'entered_at': day,\n"
        "    'left_at': day + timedelta(hours=2), 'minutes_in_status': 120.0}],\n"
        "    day, day + timedelta(days=1), day + timedelta(days=2))\n"
        "report = sprint_report_rows([{'sprint_id': '1', 'in_sprint_at_start': True}], {})\n"
        "print(len(rows), rows[0]['p90_minutes'], report[0]['issues_committed'],\n"
        "      sorted(m for m in ('pandas', 'numpy') if m in sys.modules))\n"
    )
    assert python_output(code).strip() == "1 120.0 1 []"


def test_a_write_holds_at_most_one_batch_of_the_stream(tmp_path: Path) -> None:
    # The IO manager reads the asset's stream lazily: when record k is produced, every record
    # but the last batch's is stored already, so memory is bounded by the batch, not the run.
    db = get_mongo_client(None, folder=tmp_path / "mongo").get_database("jira")
    collection = db[entity_spec("issues").collection]
    behind: list[int] = []

    def stream() -> Iterator[dict[str, Any]]:
        for n in range(2 * DEFAULT_BATCH_SIZE + 7):
            behind.append(n - collection.count_documents({}))
            yield issue(n + 1)

    counts = upsert_records(db, "issues", stream())

    assert counts.inserted == 2 * DEFAULT_BATCH_SIZE + 7
    assert max(behind) == DEFAULT_BATCH_SIZE - 1
    assert DEFAULT_BATCH_SIZE <= 250  # issues with changelogs: ~80 KB each while written


def test_partitioned_writes_hold_at_most_one_batch_across_partitions(tmp_path: Path) -> None:
    db = get_mongo_client(None, folder=tmp_path / "mongo").get_database("jira")
    spec = entity_spec("issues")
    days = [T0 + timedelta(days=n) for n in range(7)]
    behind: list[int] = []

    def stream() -> Iterator[dict[str, Any]]:
        for n in range(3 * DEFAULT_BATCH_SIZE):  # interleaved days, as a concurrent walk sends
            behind.append(n - db[spec.collection].count_documents({}))
            yield issue(n + 1, days[n % 7] + timedelta(minutes=n))

    def partition_of(record: Mapping[str, Any] | BaseModel) -> str:
        assert isinstance(record, Mapping)
        return str(record["updated"].date().isoformat())

    keys = [day.date().isoformat() for day in days]
    counts = upsert_by_partition(
        db, spec, stream(), partition_of, keys, batch_size=DEFAULT_BATCH_SIZE
    )

    assert sum(c.inserted for c in counts.values()) == 3 * DEFAULT_BATCH_SIZE
    assert max(behind) <= HELD_BATCHES * DEFAULT_BATCH_SIZE


def test_a_paused_window_walk_holds_one_page_per_sub_window_and_one_queued(
    fake_jira: FakeJiraHandle,
) -> None:
    # A consumer slower than Jira (the writer) must not let the concurrent sub-window walks
    # run ahead: each waits holding the page it fetched, and only one more page is queued.
    async def scenario() -> tuple[int, int]:
        auth = BasicAuth(fake_jira.config.email, fake_jira.config.api_token)
        limiter = RateLimiter(0.0, 4)
        async with JiraClient(auth, fake_jira.base_url, limiter=limiter) as client:
            walk = client.search_window(WHOLE_DATASET, fields=("updated",), page_size=10)
            await anext(walk)
            await asyncio.sleep(0.5)  # time for every walk to fetch what it may
            paused = client.counters.search_calls
            rest = [issue async for issue in walk]
            return paused, 1 + len(rest)

    paused, walked = asyncio.run(scenario())
    assert walked == 200
    # 4 sub-windows: the page in hand, one queued, one held by each waiting walk.
    assert paused <= 1 + 1 + 4 < math.ceil(200 / 10)


ARENA_COUNT = """
import ctypes, sys, threading
if sys.argv[1] == "import":
    import jira_pipeline
start = threading.Barrier(8)
held = []

def allocate():
    start.wait()  # all eight threads alive at once, each allocating its first block
    held.append(bytearray(100_000))  # below glibc's mmap threshold: from an arena's heap

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _arenas(*args: str) -> int:
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    stats = subprocess.run([sys.executable, "-c", ARENA_COUNT, *args], capture_output=True,
                           text=True, check=True, env=env).stderr
    return sum(line.startswith("Arena ") for line in stats.splitlines())


@pytest.mark.skipif(not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="glibc's allocator only")
def test_importing_the_package_limits_glibc_to_two_malloc_arenas() -> None:
    # Each thread's freed memory stays in its own arena's heap, resident (heap.py).
    assert _arenas("bare") > 2
    assert _arenas("import") == 2
