"""The client-side limiter: a cap on calls in flight and an evenly spaced request rate."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from runner.limits import Limiter
from runner.policy import Limits


async def _run_calls(limiter: Limiter, calls: int, hold_s: float) -> tuple[int, list[float]]:
    """Run ``calls`` tasks through the limiter; return the peak concurrency seen and each start time."""
    state = {"now": 0, "peak": 0}
    starts: list[float] = []

    async def call() -> None:
        async with limiter:
            starts.append(time.monotonic())
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(hold_s)
            state["now"] -= 1

    await asyncio.gather(*(call() for _ in range(calls)))
    return state["peak"], sorted(starts)


def test_in_flight_cap_holds_and_is_reached():
    """Never more than max_in_flight calls inside at once, and the cap is actually used."""
    limiter = Limiter(max_in_flight=3)
    peak, starts = asyncio.run(_run_calls(limiter, 12, 0.01))
    assert peak == 3 and len(starts) == 12
    assert limiter.in_flight == 0


def test_rate_spaces_starts_evenly():
    """At 100 requests/s, 11 calls take at least 100 ms from first to last start."""
    limiter = Limiter(requests_per_second=100)
    _, starts = asyncio.run(_run_calls(limiter, 11, 0.0))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert starts[-1] - starts[0] >= 0.1 - 0.002
    assert min(gaps) >= 0.01 - 0.003


def test_cancelled_waiter_does_not_leak_a_slot():
    """A task cancelled while waiting for a slot leaves the count intact for the others."""

    async def scenario() -> int:
        limiter = Limiter(max_in_flight=1)
        release = asyncio.Event()

        async def holder() -> None:
            async with limiter:
                await release.wait()

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting.cancel()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with limiter:  # the slot is free again
            return limiter.in_flight

    assert asyncio.run(scenario()) == 1


def test_sync_use_from_threads_holds_the_cap():
    """``with limiter`` from many threads also never exceeds max_in_flight."""
    limiter = Limiter(max_in_flight=2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def call() -> None:
        with limiter:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.005)
            with lock:
                state["now"] -= 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["peak"] == 2 and limiter.in_flight == 0


def test_share_splits_the_budget_evenly_with_a_floor_of_one():
    """P workers each get rate/P and max_in_flight/P (at least 1); no limits means no limiter."""
    share = Limiter.for_share(Limits(requests_per_second=90.0, max_in_flight=10), 4)
    assert (share.requests_per_second, share.max_in_flight) == (22.5, 2)
    assert Limiter.for_share(Limits(max_in_flight=3), 8).max_in_flight == 1
    assert Limiter.for_share(Limits(), 2) is None


def test_invalid_limits_are_refused():
    """A zero rate or cap is a programming error, refused at construction."""
    with pytest.raises(ValueError):
        Limiter(requests_per_second=0)
    with pytest.raises(ValueError):
        Limiter(max_in_flight=0)


def test_acquire_that_times_out_holds_nothing_and_reserves_no_start():
    """A waiter whose timeout passes gets False, takes no slot and no start time: the next caller is not pushed back."""
    limiter = Limiter(requests_per_second=10, max_in_flight=1)
    assert limiter.acquire(0.05)  # the first start is now; the next is 100 ms away
    started = time.monotonic()
    assert not limiter.acquire(0.03)  # the slot is held: waits its 30 ms, then gives up
    assert 0.025 <= time.monotonic() - started < 0.08
    limiter.release()
    assert limiter.in_flight == 0
    assert not limiter.acquire(0.01)  # a free slot, but the next start is ~70 ms away: refused at once
    assert limiter.in_flight == 0
    assert limiter.acquire(0.2) and limiter.in_flight == 1  # its start was not moved by the refusals
    assert time.monotonic() - started < 0.15


def test_async_acquire_that_times_out_holds_nothing():
    """The coroutine version gives up after its timeout and leaves the count as it found it."""

    async def scenario() -> tuple[bool, int]:
        limiter = Limiter(max_in_flight=1)
        await limiter.aacquire()
        got = await limiter.aacquire(0.02)
        limiter.release()
        return got, limiter.in_flight

    assert asyncio.run(scenario()) == (False, 0)
