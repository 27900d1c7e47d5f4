"""RateLimiter: spacing, in-flight bound, 429 pauses, and reading Jira's rate-limit headers."""

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from jira_pipeline.jira.ratelimit import (
    RateLimiter,
    parse_rate_limit_reset,
    parse_retry_after,
    pause_from_headers,
)
from jira_pipeline_tests.virtual_time import VirtualTimeLoop, run_in_virtual_time

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


@pytest.fixture
def loop():
    """An event loop on virtual time: the limiter's clock, so spacing is exact and instant."""
    virtual = VirtualTimeLoop()
    yield virtual
    virtual.close()


async def _record_starts(limiter, count, hold=0.0):
    """Start `count` requests at once; their start times on the limiter's clock, peak in flight."""
    starts, in_flight, peak = [], 0, 0

    async def request():
        nonlocal in_flight, peak
        async with limiter.slot():
            starts.append(asyncio.get_running_loop().time())
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(hold)
            in_flight -= 1

    await asyncio.gather(*(request() for _ in range(count)))
    return starts, peak


def test_request_starts_are_spaced_by_the_minimum_interval(loop):
    limiter = RateLimiter(min_interval=0.05, max_in_flight=8, clock=loop.time)
    starts, _ = run_in_virtual_time(_record_starts(limiter, 6), loop)
    # Unpaced, six requests would all start at 0.
    assert starts == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.20, 0.25])
    assert limiter.wait_seconds == 0  # spacing is not a rate-limit wait


def test_requests_in_flight_never_exceed_the_bound(loop):
    limiter = RateLimiter(min_interval=0.0, max_in_flight=3, clock=loop.time)
    starts, peak = run_in_virtual_time(_record_starts(limiter, 12, hold=0.02), loop)
    assert peak == 3
    # Three at a time, each batch once the previous one finished its 20 ms.
    assert starts == pytest.approx([0.0] * 3 + [0.02] * 3 + [0.04] * 3 + [0.06] * 3)


def test_a_pause_holds_every_request_including_those_already_waiting(loop):
    limiter = RateLimiter(min_interval=0.1, max_in_flight=4, clock=loop.time)

    async def scenario():
        waiting = asyncio.ensure_future(_record_starts(limiter, 4))
        await asyncio.sleep(0.05)  # one request started at 0; three wait for 0.1, 0.2, 0.3
        limiter.pause(1.0)  # a 429 at 0.05: nobody may start before 1.05
        starts, _ = await waiting
        return starts

    starts = run_in_virtual_time(scenario(), loop)
    assert starts[0] == 0.0
    assert limiter.paused_until == pytest.approx(1.05)
    assert min(starts[1:]) == pytest.approx(1.05)
    assert limiter.wait_seconds >= 1.0 - 0.3  # each held waiter waited out part of the pause


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


def test_after_a_429_one_request_is_in_flight_until_one_succeeds(loop):
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=4, clock=loop.time)
        limiter.pause(0.0)
        _, held_peak = await _record_starts(limiter, 6, hold=0.02)
        limiter.observe({})  # a request succeeded
        _, restored_peak = await _record_starts(limiter, 8, hold=0.02)
        return held_peak, restored_peak

    assert run_in_virtual_time(scenario(), loop) == (1, 4)


def test_requests_in_flight_never_exceed_the_reported_remaining_budget(loop):
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=8, clock=loop.time)
        limiter.observe({"x-ratelimit-remaining": "3", "x-ratelimit-limit": "100"})
        _, low_peak = await _record_starts(limiter, 8, hold=0.02)
        limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-limit": "100"})
        _, empty_peak = await _record_starts(limiter, 4, hold=0.02)
        limiter.observe({"x-ratelimit-remaining": "100", "x-ratelimit-limit": "100"})
        _, full_peak = await _record_starts(limiter, 12, hold=0.02)
        return low_peak, empty_peak, full_peak

    # An empty budget still lets one request through: its answer reports the budget again.
    assert run_in_virtual_time(scenario(), loop) == (3, 1, 8)


def test_the_remaining_budget_counts_requests_still_in_flight_when_it_is_reported(loop):
    async def scenario():
        limiter = RateLimiter(min_interval=0.0, max_in_flight=8, clock=loop.time)
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

    assert run_in_virtual_time(scenario(), loop) == 1
