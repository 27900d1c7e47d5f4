"""Where a run's CPU goes: cProfile in every thread, own time grouped by the code's module.

cProfile watches one thread (timed here by that thread's CPU clock, so time blocked on sockets,
locks or fsync is not counted); the Jira client runs on its own event-loop thread, so each
thread started while profiling gets a profiler of its own (installed through
`threading.setprofile`), and their statistics are merged. Own time (`tottime`) is charged to the
module a function is defined in, so a category holds the CPU spent in its code, not in what that
code calls.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any

# (category, path fragments), first match wins; the rest is "other".
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("extraction", ("/jira_pipeline/jira/models", "/pydantic/", "/pydantic_core/")),
    ("bson_store_writes", ("/bson/", "/pymongo/", "/jira_pipeline/storage/", "/mongita",
                           "/sqlite", "/lmdb")),
    ("json_http", ("/json/", "/httpx/", "/httpcore/", "/h11/", "/h2/", "/anyio/", "/ssl",
                   "/asyncio/", "/selectors", "/socket", "/orjson", "/jira_pipeline/jira/")),
    ("dagster_event_logging", ("/dagster/_core/events", "/dagster/_core/storage/event_log",
                               "/dagster/_core/instance", "/dagster/_core/storage/runs",
                               "/sqlalchemy/", "/dagster/_serdes/", "/dagster/_core/log_manager",
                               "/logging/", "/dagster/_utils/log")),
)
BUILTINS = {  # C functions: cProfile names them "~", charged by their name
    "json_http": ("json", "decode", "loads", "select", "recv", "send", "epoll"),
    "bson_store_writes": ("bson", "_cbson", "sqlite3", "execute", "commit", "write", "fsync"),
}


def category(filename: str, name: str) -> str:
    if filename == "~":
        for label, words in BUILTINS.items():
            if any(word in name for word in words):
                return label
        return "other"
    path = filename.replace("\\", "/")
    for label, fragments in CATEGORIES:
        if any(fragment in path for fragment in fragments):
            return label
    return "other"


class AllThreadsProfile:
    """cProfile in the calling thread and in every thread started between start() and stop()."""

    def __init__(self) -> None:
        self._main = cProfile.Profile(time.thread_time)
        self._others: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _install(self, *_: Any) -> None:
        # Runs once in each new thread, on its first profiled event: hand over to cProfile.
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self._others.append(profile)
        profile.enable()

    def start(self) -> None:
        threading.setprofile(self._install)
        self._main.enable()

    def stop(self) -> None:
        self._main.disable()
        threading.setprofile(None)

    def split(self) -> dict[str, Any]:
        """Seconds of own CPU time per category, and each category's share."""
        stats = pstats.Stats(self._main)
        with self._lock:
            others = list(self._others)
        for profile in others:
            try:
                stats.add(profile)
            except (TypeError, ValueError):
                pass  # a thread's profiler with nothing recorded
        seconds: dict[str, float] = {label: 0.0 for label, _ in CATEGORIES}
        seconds["other"] = 0.0
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
            label = category(filename, name)
            seconds[label] = seconds.get(label, 0.0) + tottime
        total = sum(seconds.values()) or 1.0
        return {
            "profiled_cpu_s": round(total, 2),
            "threads_profiled": 1 + len(others),
            **{f"{label}_s": round(value, 2) for label, value in seconds.items()},
            **{f"{label}_share": round(value / total, 3) for label, value in seconds.items()},
        }
