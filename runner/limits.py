"""Client-side request limits, so that a batch does not cause its own 429s.

A :class:`Limiter` wraps every provider attempt (retries included: a retry is
a billable request too) and enforces the policy's ``limits`` section:

* ``max_in_flight``: at most this many attempts at once;
* ``requests_per_second``: attempts start at most this often, evenly spaced
  (burst of one: providers count in short windows, and a smooth stream never
  trips them where a bursty one of the same average might).

A batch with P worker processes gives each worker an even share
(:meth:`Limiter.for_share`): rate/P and max_in_flight/P, at least 1 each, so
that the limits hold across all workers together without shared state. (When
max_in_flight is smaller than P the batch starts only max_in_flight workers,
so the share never rounds the total up.)

One limiter may be used from any number of tasks and threads: ``async with``
in coroutines, ``with`` in threads, or :meth:`Limiter.acquire` with a timeout
when the caller has a deadline of its own (the executor passes what is left of
``total_ms``: queueing for a slot must not overrun it). A waiter that is
cancelled while waiting for its start time gives up that time slot; the rate
only gets lower. A waiter that times out reserves nothing.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import Callable

from .policy import Limits


class _Waiter:
    __slots__ = ("wake", "granted")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.granted = False


class Limiter:
    """At most ``max_in_flight`` calls at once, started at most ``requests_per_second`` times a second."""

    def __init__(
        self,
        requests_per_second: float | None = None,
        max_in_flight: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.requests_per_second = requests_per_second
        self.max_in_flight = max_in_flight
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()

    @classmethod
    def for_share(cls, limits: Limits, share: int = 1) -> "Limiter | None":
        """This process's part of the policy's limits when ``share`` processes split them; None when unlimited."""
        rate, in_flight = limits.requests_per_second, limits.max_in_flight
        if rate is None and in_flight is None:
            return None
        share = max(1, share)
        return cls(
            requests_per_second=rate / share if rate is not None else None,
            max_in_flight=max(1, in_flight // share) if in_flight is not None else None,
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- the rate: each caller reserves the next start time, then waits for it

    def _reserve_delay(self, within: float) -> float | None:
        """Reserve the next start time and return how long until it, or None (nothing reserved) past ``within``."""
        if not self._interval:
            return 0.0
        now = self._clock()
        with self._lock:
            start = max(now, self._next_start)
            if start - now > within:
                return None
            self._next_start = start + self._interval
        return start - now

    # -- the in-flight cap: a counter and a FIFO of waiters; a released slot is handed to the first waiter

    def _try_take(self, waiter_factory: Callable[[], _Waiter]) -> _Waiter | None:
        with self._lock:
            if self.max_in_flight is None:
                return None
            if self._in_flight < self.max_in_flight and not self._waiters:
                self._in_flight += 1
                return None
            waiter = waiter_factory()
            self._waiters.append(waiter)
            return waiter

    def release(self) -> None:
        """Give back the slot taken by a successful :meth:`acquire` or :meth:`aacquire`."""
        if self.max_in_flight is None:
            return
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True  # the slot passes on; the count stays
            waiter.wake()
        else:
            self._in_flight -= 1

    def _abandon(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.granted:
                self._release_locked()
            else:
                self._waiters.remove(waiter)

    def _start_delay(self, give_up: float) -> float | None:
        """With a slot taken: the wait for a start time before ``give_up``, or None with the slot given back."""
        delay = self._reserve_delay(give_up - time.monotonic())
        if delay is None:
            self.release()
        return delay

    # -- taking a slot: bounded by ``timeout`` so that a caller's own deadline (total_ms) holds while it queues

    async def aacquire(self, timeout: float = math.inf) -> bool:
        """Wait for a slot and a start time, at most ``timeout`` seconds; False (holding nothing) when that is not enough."""
        give_up = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, future)

        waiter = self._try_take(lambda: _Waiter(wake))
        if waiter is not None:
            try:
                await asyncio.wait_for(future, None if timeout == math.inf else max(0.0, timeout))
            except BaseException as exc:
                self._abandon(waiter)
                if isinstance(exc, TimeoutError):
                    return False
                raise
        delay = self._start_delay(give_up)
        try:
            if delay:
                await asyncio.sleep(delay)
        except BaseException:
            self.release()
            raise
        return delay is not None

    def acquire(self, timeout: float = math.inf) -> bool:
        """The thread version of :meth:`aacquire`."""
        give_up = time.monotonic() + timeout
        event = threading.Event()
        waiter = self._try_take(lambda: _Waiter(event.set))
        if waiter is not None:
            try:
                got = event.wait(None if timeout == math.inf else max(0.0, timeout))
            except BaseException:
                self._abandon(waiter)
                raise
            if not got:
                self._abandon(waiter)  # a slot granted in the meantime is passed on, not lost
                return False
        delay = self._start_delay(give_up)
        try:
            if delay:
                time.sleep(delay)
        except BaseException:
            self.release()
            raise
        return delay is not None

    async def __aenter__(self) -> "Limiter":
        await self.aacquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __enter__(self) -> "Limiter":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Limiter(requests_per_second={self.requests_per_second}, max_in_flight={self.max_in_flight})"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
