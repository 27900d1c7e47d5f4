"""RateLimiter: spacing, in-flight bound, 429 pauses, and reading Jira's rate-limit headers."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from jira_pipeline.jira.ratelimit import (
    RateLimiter,
    parse_rate_limit_reset,
    parse_retry_after,
    pause_from_headers,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_an_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=30), usegmt=True), now=NOW) \
        == 30.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=30), usegmt=True), now=NOW) \
        == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rate_limit_reset_as_iso_timestamp_or_epoch_seconds():
    assert parse_rate_limit_reset("2026-01-15T12:00:05Z", now=NOW) == 5.0
    assert parse_rate_limit_reset("2026-01-15T12:00:05.000+0000", now=NOW) == 5.0
    assert parse_rate_limit_reset(str(NOW.timestamp() + 9), now=NOW) == pytest.approx(9.0)


def test_retry_after_wins_over_reset_and_reset_is_the_fallback():
    assert pause_from_headers({"retry-after": "3", "x-ratelimit-reset": "2099-01-01T00:00Z"}) == 3
    assert pause_from_headers({"x-ratelimit-reset": "4"}) == 4.0
    assert pause_from_headers({}) is None


async def _record_starts(limiter, count, hold=0.0):
    starts, in_flight, peak = [], 0, 0

    async def request():
        nonlocal in_flight, peak
        async with limiter.slot():
            starts.append(time.monotonic())
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(hold)
            in_flight -= 1

    await asyncio.gather(*(request() for _ in range(count)))
    return starts, peak


def test_request_starts_are_spaced_by_the_minimum_interval():
    limiter = RateLimiter(min_interval=0.05, max_in_flight=8)
    starts, _ = asyncio.run(_record_starts(limiter, 6))
    # Unpaced, six requests would all start at once; paced, they span five intervals. (A busy
    # machine may record the first start late, hence the margin.)
    assert starts[-1] - starts[0] >= 5 * 0.05 * 0.8


def test_requests_in_flight_never_exceed_the_bound():
    limiter = RateLimiter(min_interval=0.0, max_in_flight=3)
    _, peak = asyncio.run(_record_starts(limiter, 12, hold=0.02))
    assert peak == 3


def test_a_pause_holds_every_request_including_those_already_waiting():
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=4)
        async with limiter.slot():
            pass
        limiter.pause(0.15)
        paused_until = limiter.paused_until
        starts, _ = await _record_starts(limiter, 4)
        return paused_until, starts, limiter

    paused_until, starts, limiter = asyncio.run(scenario())
    assert all(start >= paused_until for start in starts)
    assert limiter.wait_seconds > 0


def test_low_remaining_slows_the_pace_and_it_recovers_afterwards():
    limiter = RateLimiter(min_interval=0.2)
    limiter.observe({"x-ratelimit-remaining": "3", "x-ratelimit-limit": "100"})
    assert limiter.interval > 0.2
    for _ in range(50):  # a budget that stays low holds the pace, it does not compound
        limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-limit": "2"})
    assert limiter.interval == pytest.approx(0.4)
    for _ in range(50):
        limiter.observe({"x-ratelimit-remaining": "100"})
    assert limiter.interval == pytest.approx(0.2)


def test_a_429_pause_also_widens_the_spacing():
    limiter = RateLimiter(min_interval=0.2)
    limiter.pause(0.0)
    assert limiter.interval > 0.2


def test_after_a_429_one_request_is_in_flight_until_one_succeeds():
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=4)
        limiter.pause(0.0)
        _, held_peak = await _record_starts(limiter, 6, hold=0.02)
        limiter.observe({})  # a request succeeded
        _, restored_peak = await _record_starts(limiter, 8, hold=0.02)
        return held_peak, restored_peak

    assert asyncio.run(scenario()) == (1, 4)


def test_requests_in_flight_never_exceed_the_reported_remaining_budget():
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=8)
        limiter.observe({"x-ratelimit-remaining": "3", "x-ratelimit-limit": "100"})
        _, low_peak = await _record_starts(limiter, 8, hold=0.02)
        limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-limit": "100"})
        _, empty_peak = await _record_starts(limiter, 4, hold=0.02)
        limiter.observe({"x-ratelimit-remaining": "100", "x-ratelimit-limit": "100"})
        _, full_peak = await _record_starts(limiter, 12, hold=0.02)
        return low_peak, empty_peak, full_peak

    # An empty budget still lets one request through: its answer reports the budget again.
    assert asyncio.run(scenario()) == (3, 1, 8)


def test_the_remaining_budget_counts_requests_still_in_flight_when_it_is_reported():
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=8)
        release = asyncio.Event()

        async def held_request():
            async with limiter.slot():
                await release.wait()

        held = [asyncio.create_task(held_request()) for _ in range(2)]
        while limiter.in_flight < 2:
            await asyncio.sleep(0)
        # Jira may have answered this before counting the two requests still in flight.
        limiter.observe({"x-ratelimit-remaining": "3"})
        asyncio.get_running_loop().call_later(0.1, release.set)
        _, peak = await _record_starts(limiter, 4, hold=0.02)
        await asyncio.gather(*held)
        return peak

    assert asyncio.run(scenario()) == 1
