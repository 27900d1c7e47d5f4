"""Per-connection request pacing: minimum spacing, a bound on requests in flight, 429 pauses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from jira_pipeline.timeutil import parse_jira_datetime

# Spacing grows when Jira says we are close to its limit and shrinks back slowly afterwards, so a
# connection settles just under the limit instead of oscillating into 429s.
_SLOWDOWN_FACTOR = 2.0
_MAX_SLOWDOWN = 16.0
_RECOVERY_FACTOR = 0.9
_LOW_REMAINING_SLOWDOWN = 2.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(tz=UTC))).total_seconds())


def parse_rate_limit_reset(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds until `X-RateLimit-Reset`: an ISO-8601 timestamp (Jira Cloud) or epoch seconds."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    current = now or datetime.now(tz=UTC)
    try:
        number = float(text)
    except ValueError:
        try:
            when = parse_jira_datetime(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            return None
        assert when is not None
        return max(0.0, (when - current).total_seconds())
    # A small number is a delay in seconds; a large one is an epoch timestamp.
    if number > 1e9:
        return max(0.0, number - current.timestamp())
    return max(0.0, number)


def pause_from_headers(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks us to stay quiet, or None when it gives no advice."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is not None:
        return retry_after
    return parse_rate_limit_reset(headers.get("x-ratelimit-reset"))


class RateLimiter:
    """Paces the requests of one connection: every request takes a slot from `slot()`.

    - at most `max_in_flight` requests are outstanding; after a 429 only one, until a request
      succeeds; and no more than the last `X-RateLimit-Remaining` allows (each request sent since
      spends one), with always one allowed so the budget is read again;
    - request starts are at least `min_interval` seconds apart (longer while Jira reports few
      requests remaining);
    - after `pause(seconds)` (a 429) no request starts until the pause has passed, including
      requests that were already waiting for their turn.

    A request already sent when another one's 429 is served reaches Jira inside that 429's
    `Retry-After` window; the in-flight bounds keep such requests from existing.
    """

    def __init__(
        self,
        min_interval: float = 0.2,
        max_in_flight: int = 4,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.min_interval = min_interval
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._in_flight = 0
        self._rate_limited = False  # a 429 came and no request has succeeded since
        self._budget: int | None = None  # requests Jira still allows, as last reported
        self._room_waiters: list[asyncio.Future[None]] = []
        self._next_start = 0.0
        self._paused_until = 0.0
        self._slowdown = 1.0
        self.wait_seconds = 0.0

    @property
    def interval(self) -> float:
        """The spacing currently enforced (the minimum, stretched while Jira is near its limit)."""
        return self.min_interval * self._slowdown

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        while True:
            await self._wait_for_room()
            await self._wait_for_turn()
            # Another request may have taken the room, or a 429 may have come, while we slept.
            if self._has_room() and self._paused_until <= self._clock():
                break
        self._in_flight += 1
        if self._budget is not None:
            self._budget -= 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._wake_room_waiters()

    def _has_room(self) -> bool:
        if self._in_flight == 0:
            return True
        if self._in_flight >= self.max_in_flight or self._rate_limited:
            return False
        return self._budget is None or self._budget > 0

    async def _wait_for_room(self) -> None:
        while not self._has_room():
            waiter = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            await waiter

    def _wake_room_waiters(self) -> None:
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_turn(self) -> None:
        while True:
            now = self._clock()
            start = max(now, self._next_start, self._paused_until)
            # Reserve the start time so concurrent waiters line up `interval` apart.
            self._next_start = start + self.interval
            if start > now:
                paused = min(self._paused_until, start) - now
                if paused > 0:
                    self.wait_seconds += paused
                await asyncio.sleep(start - now)
            # A 429 that arrived while we slept holds us too.
            if self._paused_until <= self._clock():
                return

    def pause(self, seconds: float) -> None:
        """Hold every request of this connection for `seconds` (Jira answered 429)."""
        until = self._clock() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._rate_limited = True
        self._slowdown = min(_MAX_SLOWDOWN, max(self._slowdown, 1.0) * _SLOWDOWN_FACTOR)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adapt the pace to the rate-limit headers of a successful answer.

        Nearly out of budget (no requests or under a tenth of the limit left) holds the spacing
        at double; otherwise it relaxes back towards the minimum. Only 429s compound the spacing:
        a small budget that is always "low" must not slow the connection to a crawl.

        A success also lifts the one-in-flight hold of a 429. The reported remaining budget is
        counted down by every request still in flight, as Jira may not have counted them yet.
        """
        remaining = _header_int(headers, "x-ratelimit-remaining")
        limit = _header_int(headers, "x-ratelimit-limit")
        self._rate_limited = False
        self._budget = None if remaining is None else remaining - self._in_flight
        self._wake_room_waiters()
        if remaining is not None and (remaining <= 0 or (limit and remaining < limit / 10)):
            self._slowdown = max(self._slowdown, _LOW_REMAINING_SLOWDOWN)
        elif self._slowdown > 1.0:
            self._slowdown = max(1.0, self._slowdown * _RECOVERY_FACTOR)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
