"""The blocking bridge Dagster's sync assets use: bounded hand-over, errors, early stops."""

import asyncio
import threading

import pytest

from jira_pipeline.jira.bridge import EventLoopThread, iterate_blocking, run_sync


def test_run_sync_returns_the_coroutine_result_and_raises_its_error():
    async def answer():
        await asyncio.sleep(0)
        return 42

    async def fail():
        raise LookupError("no such thing")

    assert run_sync(answer()) == 42
    with pytest.raises(LookupError, match="no such thing"):
        run_sync(fail())


def test_iterate_blocking_yields_every_item_in_order():
    async def numbers():
        for n in range(50):
            await asyncio.sleep(0)
            yield n

    assert list(iterate_blocking(numbers, max_buffered=3)) == list(range(50))


def test_the_producer_never_runs_more_than_the_buffer_ahead_of_the_consumer():
    produced = []
    consumed = []

    async def numbers():
        for n in range(40):
            produced.append(n)
            yield n

    async def let_the_producer_run():
        # The producer shares this loop: yielding to it often enough lets it run as far as it
        # can (until the buffer is full), however slow the machine.
        for _ in range(200):
            await asyncio.sleep(0)

    ahead = []
    for n in iterate_blocking(numbers, max_buffered=4):
        consumed.append(n)
        run_sync(let_the_producer_run())
        ahead.append(len(produced) - len(consumed))
    assert consumed == list(range(40))
    assert max(ahead) == 4 + 1  # buffer plus the item in hand: reached, never exceeded


def test_an_error_in_the_middle_reaches_the_consumer_after_the_items_before_it():
    async def breaks():
        yield 1
        yield 2
        raise ConnectionError("Jira went away")

    received = []
    with pytest.raises(ConnectionError, match="went away"):
        for item in iterate_blocking(breaks):
            received.append(item)
    assert received == [1, 2]


def test_stopping_early_cancels_the_producer_and_closes_its_iterator():
    finished = threading.Event()

    async def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            finished.set()

    iterator = iterate_blocking(endless, max_buffered=2)
    for item in iterator:
        if item == 3:
            break
    iterator.close()
    assert finished.wait(5)


def test_the_loop_thread_keeps_loop_bound_objects_usable_across_calls():
    # An asyncio.Lock binds to a loop on its first contended acquire and refuses any other loop
    # afterwards: each call below contends the same lock, so a fresh loop per call would fail.
    loop = EventLoopThread()
    lock_holder = {}

    async def contend(name):
        lock = lock_holder.setdefault("lock", asyncio.Lock())
        order = []

        async def waiter():
            async with lock:
                order.append(f"{name} waiter")

        async with lock:
            task = asyncio.ensure_future(waiter())
            await asyncio.sleep(0)  # the waiter now blocks on the held lock
            assert not task.done()
            order.append(f"{name} holder")
        await task
        return order

    async def contended_items():
        for name in ("first item", "second item"):
            yield await contend(name)

    try:
        assert run_sync(contend("one"), loop=loop) == ["one holder", "one waiter"]
        assert run_sync(contend("two"), loop=loop) == ["two holder", "two waiter"]
        assert list(iterate_blocking(contended_items, loop=loop)) == [
            ["first item holder", "first item waiter"],
            ["second item holder", "second item waiter"],
        ]
    finally:
        loop.close()
