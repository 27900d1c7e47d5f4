"""An asyncio event loop on virtual time, so pacing is tested by the clock, never by waiting.

`loop.time()` starts at 0 and moves only when every task is waiting on a timer: it then jumps
to the earliest timer, as if that much time had passed. Inject `loop.time` as the clock of the
code under test and every `asyncio.sleep` ends exactly on time, whatever the machine's load.
Sockets and threads still work: ready I/O is served before virtual time moves on.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; an idle wait advances the loop's virtual clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or self.loop is None:
            return events
        if timeout is None:  # nothing scheduled: only another thread can wake the loop
            return super().select(None)
        self.loop.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is virtual (see the module docstring)."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run_in_virtual_time(main: Coroutine[Any, Any, T], loop: VirtualTimeLoop) -> T:
    """Run `main` to completion on `loop` (which the caller created and will close)."""
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
