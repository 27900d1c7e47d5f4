"""`WalkProgress`: a log line at least every 10 s of a long Jira walk: how many so far, of how
many Jira counts, the rate, and the rate-limit waits so far."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from jira_pipeline.jira import ClientCounters

T = TypeVar("T")

# Seconds between two progress lines of one walk. Read when a walk starts (tests shorten it).
DEFAULT_INTERVAL_S = 10.0


class WalkProgress:
    """Logs a walk's progress from a timer thread, so a line comes even while the walk waits
    (a rate-limit pause, a slow page). Walks shorter than half an interval log nothing and send
    nothing.

    `count` starts Jira's count of the walk (one request, concurrent with the walk) and is
    called only once the walk has lasted half an interval, so short walks (a delta) never pay
    for it; or it is the number itself when the caller already knows it.
    """

    def __init__(
        self,
        log: Any,
        what: str = "issues",
        *,
        count: Callable[[], Future[int]] | int | None = None,
        counters: Callable[[], ClientCounters] | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.log = log
        self.what = what
        self.interval_s = DEFAULT_INTERVAL_S if interval_s is None else interval_s
        self._count = count
        self._total: Future[int] | None = None
        self._counters = counters
        self._waits_before: ClientCounters | None = None
        self.done = 0
        self.lines: list[str] = []
        self._started = time.monotonic()
        self._stop = threading.Event()

    def watch(self, items: Iterable[T], size: Callable[[T], int] | None = None) -> Iterator[T]:
        """`items`, unchanged, counted (`size` of each item; 1 by default) while the ticker
        runs."""
        self._started = time.monotonic()
        self._waits_before = self._counters() if self._counters is not None else None
        ticker = threading.Thread(target=self._tick, name=f"progress: {self.what}", daemon=True)
        ticker.start()
        try:
            for item in items:
                self.done += 1 if size is None else size(item)
                yield item
        finally:
            self._stop.set()
            ticker.join(timeout=5)
            if self.lines:  # a long walk: say how it ended
                self._emit(self.line(finished=True))

    def _tick(self) -> None:
        if self._stop.wait(self.interval_s / 2):
            return
        self._start_count()
        while not self._stop.wait(self.interval_s / 2):
            self._emit(self.line())
            if self._stop.wait(self.interval_s / 2):
                return

    def _start_count(self) -> None:
        if callable(self._count):
            try:
                self._total = self._count()
            except Exception as error:  # no count is no reason to stop the walk
                failed: Future[int] = Future()
                failed.set_exception(error)
                self._total = failed
        elif isinstance(self._count, int):
            known: Future[int] = Future()
            known.set_result(self._count)
            self._total = known

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if self.log is not None:
            self.log.info(line)

    def line(self, *, finished: bool = False) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        verb = "fetched, done" if finished else "fetched so far"
        seconds = f"{elapsed:.0f}" if elapsed >= 10 else f"{elapsed:.1f}"
        text = f"{self.what}: {self.done:,}{self._of_total()} {verb} in {seconds} s"
        text += f", {self.done / elapsed:.1f}/s"
        if self._counters is not None and self._waits_before is not None:
            now, before = self._counters(), self._waits_before
            waits = now.rate_limit_waits - before.rate_limit_waits
            waited = now.wait_seconds - before.wait_seconds
            text += f", {waits} rate-limit wait(s) ({waited:.1f} s)"
        return text

    def _of_total(self) -> str:
        total = self._total
        if total is None:
            if self._count is None:
                return " (Jira's count is not available for this walk)"
            return " of ? (Jira's count not asked yet)"
        if not total.done():
            return " of ? (Jira's count not answered yet)"
        error = total.exception()
        if error is not None:
            return f" (Jira's count is not available: {type(error).__name__})"
        value = total.result()
        percent = f" ({100 * self.done / value:.0f}%)" if value else ""
        return f" of {value:,}{percent}"
