"""Run the async client from synchronous code (Dagster's assets) on an event-loop thread."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import AsyncIterable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class EventLoopThread:
    """One event loop running forever in a daemon thread.

    Async objects bound to a loop (an `httpx.AsyncClient`'s pool, asyncio locks) stay usable
    across many sync calls because every call runs on this same loop.
    """

    def __init__(self, name: str = "jira-client-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self.is_current:
            coro.close()
            raise RuntimeError("blocking on the event-loop thread from itself would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


_shared: EventLoopThread | None = None
_shared_pid: int | None = None
_shared_lock = threading.Lock()


def shared_loop() -> EventLoopThread:
    """The process's loop thread, started on first use (again after a fork: threads do not
    survive one)."""
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is None or _shared_pid != os.getpid():
            _shared = EventLoopThread()
            _shared_pid = os.getpid()
        return _shared


class Submitted(Generic[T]):
    """A coroutine running on the loop thread, cancellable from any thread.

    Cancelling the concurrent Future of `run_coroutine_threadsafe` does nothing once the
    coroutine runs, so the asyncio task itself is cancelled on its own loop.
    """

    def __init__(self, runner: EventLoopThread, coro: Coroutine[Any, Any, T]) -> None:
        self.runner = runner
        self.task: asyncio.Task[Any] | None = None

        async def tracked() -> T:
            self.task = asyncio.current_task()
            return await coro

        self.future = runner.submit(tracked())

    def wait(self, timeout: float | None = None) -> T:
        """The coroutine's result (or its error); an interrupted wait cancels it."""
        try:
            return self.future.result(timeout)
        except BaseException:
            self.cancel_and_wait()
            raise

    def cancel_and_wait(self, timeout: float = 30.0) -> None:
        if self.future.done():
            return
        if self.runner.is_current:
            # On the loop's own thread (a finalizer run there): waiting would block the loop
            # that must run the cancellation.
            if self.task is not None:
                self.task.cancel()
            else:
                self.future.cancel()
            return

        def cancel() -> None:
            if self.task is not None:
                self.task.cancel()
            else:
                self.future.cancel()

        self.runner.loop.call_soon_threadsafe(cancel)
        try:
            self.future.result(timeout=timeout)
        except BaseException:
            # Cancellation (or the error it provoked) is the expected ending here.
            return


def run_sync(
    coro: Coroutine[Any, Any, T],
    *,
    loop: EventLoopThread | None = None,
    timeout: float | None = None,
) -> T:
    """Run `coro` to completion on the loop thread and return its result (or raise its error).

    If the caller is interrupted or `timeout` passes, the coroutine is cancelled.
    """
    return start_in_background(coro, loop=loop).wait(timeout)


def start_in_background(
    coro: Coroutine[Any, Any, T], *, loop: EventLoopThread | None = None
) -> Submitted[T]:
    """Start `coro` on the loop thread now; `wait()` for its result later, or
    `cancel_and_wait()` when it is no longer wanted."""
    return Submitted(loop or shared_loop(), coro)


def iterate_blocking(
    async_iterable_factory: Callable[[], AsyncIterable[T]],
    *,
    max_buffered: int = 256,
    loop: EventLoopThread | None = None,
) -> Iterator[T]:
    """Iterate an async iterable from sync code, with at most `max_buffered` items in between.

    The factory is called on the loop thread (so the iterable is born on the loop it uses). The
    producer waits while the buffer is full, so memory stays bounded by `max_buffered` however
    slow the consumer is. Errors reach the consumer as raised; when the consumer stops early
    (break, exception, garbage collection) the producer is cancelled and its iterator closed.
    """
    if max_buffered < 1:
        raise ValueError("max_buffered must be at least 1")
    runner = loop or shared_loop()
    handoff: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    free_slots: list[asyncio.Semaphore] = []

    async def produce() -> None:
        slots = asyncio.Semaphore(max_buffered)
        free_slots.append(slots)
        try:
            iterator = aiter(async_iterable_factory())
        except Exception as error:
            handoff.put(("error", error))
            return
        try:
            async for item in iterator:
                await slots.acquire()
                handoff.put(("item", item))
            handoff.put(("end", None))
        except Exception as error:
            handoff.put(("error", error))
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def release_slot() -> None:
        free_slots[0].release()

    def consume() -> Iterator[T]:
        # Started on the first next(): an iterator that is never iterated leaves nothing behind.
        submitted = Submitted(runner, produce())
        try:
            while True:
                try:
                    kind, value = handoff.get(timeout=0.25)
                except queue.Empty:
                    if submitted.future.done() and handoff.empty():
                        # The producer ended without a word: it was cancelled or crashed.
                        submitted.future.result()
                        return
                    continue
                if kind == "item":
                    runner.loop.call_soon_threadsafe(release_slot)
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            submitted.cancel_and_wait()

    return consume()
