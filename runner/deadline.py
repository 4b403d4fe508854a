"""A hard per-attempt deadline for the synchronous path, without asyncio.

Why this exists: DSPy's ``timeout`` (and lm15's transport under it) bounds each
socket operation, not the call. A server that trickles a byte every half second
keeps a call alive for ever, and a server that never answers holds it for the
full read timeout. On the async path ``asyncio.timeout`` cancels the call and
the transport closes the socket. The sync path must not pay for asyncio (in
DSPy 3.4 one ``acall`` costs about twice the CPU of a sync call), and a thread
that is merely abandoned keeps the request open.

How: the sync call runs in the calling thread, on a DSPy LM whose native
engine uses :class:`DeadlineTransport`, lm15's own stdlib transport with two
hooks. When a request is written, the transport ties the connection's socket
to the calling thread's current :class:`Deadline` (a context variable); when
the response is released, it unties it. One daemon thread, the
:class:`Watchdog`, holds every armed deadline in a heap; when one passes while
its socket is tied, it calls ``socket.shutdown(SHUT_RDWR)``, which wakes the
blocked ``recv`` at once (``close()`` from another thread would not) and sends
the server a FIN. The call fails inside DSPy with a transport error, and the
executor, seeing ``deadline.expired``, reports ``timeout``. Connect and pool
waits are bounded by the remaining time through the request's own timeouts.

Cost on the success path: a lock-free-ish heap push and two attribute writes
(a few microseconds); the watchdog wakes only when a deadline actually passes,
because finished deadlines are dropped lazily, never signalled.

The hooks override two private methods of lm15's ``StdlibTransport``
(``_send_request`` and ``_make_release``, DSPy 3.4's vendored copy). The hang
and trickle tests pin that behaviour: if a DSPy upgrade moves them, those
tests fail instead of the deadline silently not holding.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

from dspy._vendor.lm15.transports import StdlibTransport

_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("dspy_run_deadline", default=None)


class DeadlineExpired(Exception):
    """Raised inside the transport when a request would start after its deadline.

    Deliberately not an ``OSError``: lm15 treats those as stale connections and retries them.
    """


class Deadline:
    """One attempt's deadline (a ``time.monotonic`` instant) and the socket it may have to cut."""

    __slots__ = ("at", "expired", "_done", "_sock", "_lock")

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                raise DeadlineExpired("the attempt's deadline passed before the request was sent")
            self._sock = sock

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def finish(self) -> None:
        """The attempt is over: the watchdog must leave its (possibly pooled) socket alone."""
        with self._lock:
            self._done = True
            self._sock = None

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its owner: nothing left to cut


class Watchdog:
    """One daemon thread that fires :class:`Deadline` objects when they pass."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def arm(self, deadline: Deadline) -> None:
        with self._cv:
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dspy-run-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cv.notify()  # a new earliest deadline: the sleeper must shorten its sleep

    def _run(self) -> None:
        while True:
            with self._cv:
                due = self._next_due()
            due.fire()

    def _next_due(self) -> Deadline:
        while True:
            now = time.monotonic()
            while self._heap and (self._heap[0][2]._done or self._heap[0][0] <= now):
                _, _, deadline = heapq.heappop(self._heap)
                if not deadline._done:
                    return deadline
            self._cv.wait(self._heap[0][0] - now if self._heap else None)

    def _after_fork(self) -> None:
        self._heap = []
        self._cv = threading.Condition(threading.Lock())
        self._thread = None


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._after_fork)


class attempt_deadline:
    """Context manager: run a sync block under a hard deadline ``seconds`` from now."""

    __slots__ = ("deadline", "_token")

    def __init__(self, seconds: float) -> None:
        self.deadline = Deadline(time.monotonic() + seconds)

    def __enter__(self) -> Deadline:
        WATCHDOG.arm(self.deadline)
        self._token = _CURRENT.set(self.deadline)
        return self.deadline

    def __exit__(self, *exc: Any) -> None:
        self.deadline.finish()
        _CURRENT.reset(self._token)


class DeadlineTransport(StdlibTransport):
    """lm15's stdlib transport, with its sockets cut by the current thread's :class:`Deadline`."""

    def stream(self, request):  # type: ignore[no-untyped-def]
        deadline = _CURRENT.get()
        if deadline is not None:
            remaining = deadline.remaining()
            if remaining <= 0 or deadline.expired:
                deadline.expired = True
                raise DeadlineExpired("the attempt's deadline passed before the request was sent")
            # Connecting cannot be cut by the watchdog (there is no socket yet): bound it instead.
            request.connect_timeout = min(request.connect_timeout or self._connect_timeout, remaining)
        return super().stream(request)

    def _send_request(self, conn, request, parsed, **kwargs):  # type: ignore[no-untyped-def]
        deadline = _CURRENT.get()
        if deadline is not None:
            deadline.attach(conn.sock)
        return super()._send_request(conn, request, parsed, **kwargs)

    def _make_release(self, conn, keep_alive):  # type: ignore[no-untyped-def]
        release = super()._make_release(conn, keep_alive)
        deadline = _CURRENT.get()
        if deadline is None:
            return release

        def release_and_detach(body_consumed: bool) -> None:
            # Untie before the connection goes back to the pool, where another call may take it.
            deadline.detach()
            release(body_consumed)

        return release_and_detach
