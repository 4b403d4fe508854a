"""A scriptable OpenAI-compatible chat-completions server, for rehearsing failures.

Real DSPy talks to it over real HTTP on 127.0.0.1, so tests and ``dspy-run
rehearse`` see exactly what a provider outage looks like to a program: a 429
with ``Retry-After``, a 5xx, a connection that hangs or trickles one byte at a
time, a reply DSPy cannot parse. The script (see :mod:`.script`) says which
request gets which fault.

Why hand-written HTTP/1.1 on an :class:`asyncio.Protocol` rather than a web
framework: the faults live at the socket level (send nothing, send one byte,
close without a word, notice the client leaving at once), and the benchmark
wants thousands of keep-alive requests per second from one core. The protocol
answers a plain ``ok`` inline in ``data_received`` without creating a task.

Run it in-process with :class:`Provider` (a background thread with its own
event loop), or as a process::

    python -m runner.rehearsal.server --port 0 --script faults.yaml [--latency-ms 50]

which prints ``listening on http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT.
The server never records or prints the Authorization header.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from .answers import (
    DEFAULT_ANSWER,
    GARBAGE_BODY,
    UNPARSEABLE_TEXT,
    Answer,
    FormatReader,
    choose_outputs,
    last_user_text,
    message_text,
    parse_answers,
    render,
)
from .script import OK, Script, Step, parse_script

HOST = "127.0.0.1"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
FAKE_KEY_HINT = "sk-...abcd"  # what a real provider echoes of the key; never the real header

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the server saw of one request and what it did about it (never any credential).

    Times are ``time.monotonic()`` of this process, so tests can compare them
    with their own clock readings. ``closed_at`` is set when the client went
    away while the server was still busy with this request (hang, trickle, a
    delay); ``status`` is None when no status line was sent (hang, drop).
    """

    index: int
    arrived_at: float
    model: str | None
    kind: str
    user_text: str
    status: int | None = None
    responded_at: float | None = None
    closed_at: float | None = None
    path: str = "/v1/chat/completions"
    connection: int = 0  # same number: same TCP connection (keep-alive)
    lane: str | None = None  # the script key that answered, "*" or a model name
    stream: bool = False
    messages: tuple[tuple[str, str], ...] = ()  # (role, text) of every message
    options: tuple[tuple[str, Any], ...] = ()  # the other body keys: temperature, max_tokens, response_format...
    content: str | None = None  # the completion text sent, for ok/empty/unparseable

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


class _State:
    """The script position and the request log, shared by the loop thread and callers.

    One lock guards both: a step is taken and its record appended atomically,
    so record order is the order in which the script was applied.
    """

    def __init__(self, script: Script, answers: tuple[Answer, ...], default_answer: str, latency_ms: float) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.answers = answers
        self.default_answer = default_answer
        self.latency_s = latency_ms / 1000.0
        self.records: list[RequestRecord] = []
        self.formats = FormatReader()
        self._texts: dict[str, str] = {}
        self._load(script)

    def shared_text(self, text: str) -> str:
        """One copy of each long repeated text (a program's system prompt), so a long log stays small."""
        if len(text) < 256:
            return text
        if len(self._texts) >= 1024:
            self._texts.clear()
        return self._texts.setdefault(text, text)

    def _load(self, script: Script) -> None:
        self.script = script
        self.cursors: dict[str, list[int]] = {key: [0, 0] for key, _ in script.lanes}

    def set_script(self, script: Script, reset_log: bool) -> None:
        with self.lock:
            self._load(script)
            if reset_log:
                self.records.clear()
            self.changed.notify_all()

    def reset(self) -> None:
        self.set_script(self.script, reset_log=True)

    def take(self, model: str | None) -> tuple[Step, str | None]:
        """The step for the next request to ``model``; caller holds the lock."""
        lane = self.script.lane_for(model)
        if lane is None:
            return OK, None
        steps = self.script.steps(lane)
        cursor = self.cursors[lane]
        while cursor[0] < len(steps):
            step = steps[cursor[0]]
            if step.times is None or cursor[1] < step.times:
                cursor[1] += 1
                return step, lane
            cursor[0], cursor[1] = cursor[0] + 1, 0
        return OK, lane

    def arrive(
        self, model: str | None, answer_now: Callable[[Step, int], _Reply | None], **fields: Any
    ) -> tuple[Step, RequestRecord, _Reply | None]:
        """Take the next step and log the request; answer at once when ``answer_now`` can.

        An immediate reply is built under the lock and logged in the same
        record, so the log holds it before the client can see it, at the cost
        of one record per request instead of a record and a replacement.
        """
        with self.lock:
            arrived_at = time.monotonic()
            step, lane = self.take(model)
            index = len(self.records)
            reply = answer_now(step, index)
            if reply is None:
                record = RequestRecord(index=index, arrived_at=arrived_at, model=model, kind=step.kind, lane=lane, **fields)
            else:
                record = RequestRecord(index=index, arrived_at=arrived_at, model=model, kind=step.kind, lane=lane,
                                       status=reply.status, responded_at=time.monotonic(), content=reply.content, **fields)
            self.records.append(record)
            self.changed.notify_all()
            return step, record, reply

    def log_other(self, **fields: Any) -> RequestRecord:
        """Record a request the script did not answer (a bad path or body)."""
        with self.lock:
            record = RequestRecord(index=len(self.records), arrived_at=time.monotonic(), **fields)
            self.records.append(record)
            self.changed.notify_all()
            return record

    def update(self, record: RequestRecord, **changes: Any) -> None:
        with self.lock:
            # A reset may have cleared the log while this request was in flight.
            if record.index < len(self.records) and self.records[record.index].arrived_at == record.arrived_at:
                self.records[record.index] = dataclasses.replace(self.records[record.index], **changes)
                self.changed.notify_all()


@dataclass(frozen=True, slots=True)
class _Reply:
    """A complete HTTP answer, or ``status=None`` for a drop."""

    status: int | None
    payload: bytes = b""
    extra: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    content: str | None = None


class _Request:
    __slots__ = ("method", "path", "headers", "body", "keep_alive")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.method, self.path, self.headers, self.body, self.keep_alive = method, path, headers, body, keep_alive


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, path, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(400, "malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return method, path, headers, keep_alive


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def _fault_response(step: Step, model: str | None) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and extra headers of an error kind, shaped like OpenAI's."""
    name = model or "the model"
    msg = step.message
    if step.kind == "rate_limit":
        headers = [("x-ratelimit-limit-requests", "3"), ("x-ratelimit-remaining-requests", "0")]
        retry_ms = step.retry_after_ms
        if retry_ms is not None:  # without it, the client's own backoff decides, as with providers that send none
            headers += [
                ("retry-after", _seconds_text(retry_ms)),
                ("retry-after-ms", _number_text(retry_ms)),
                ("x-ratelimit-reset-requests", f"{_seconds_text(retry_ms)}s"),
            ]
        again = f" Please try again in {_number_text(retry_ms)}ms." if retry_ms is not None else ""
        text = msg or (
            f"Rate limit reached for {name} in organization org-rehearsal on requests per min (RPM): "
            f"Limit 3, Used 3, Requested 1.{again}"
        )
        return 429, _error_body(text, "requests", "rate_limit_exceeded"), headers
    if step.kind == "quota":
        text = msg or "You exceeded your current quota, please check your plan and billing details."
        return 429, _error_body(text, "insufficient_quota", "insufficient_quota"), []
    if step.kind == "auth":
        text = msg or f"Incorrect API key provided: {FAKE_KEY_HINT}. You can find your API key at https://platform.openai.com/account/api-keys."
        return 401, _error_body(text, "invalid_request_error", "invalid_api_key"), []
    if step.kind == "context_window":
        text = msg or (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
            "Please reduce the length of the messages."
        )
        return 400, _error_body(text, "invalid_request_error", "context_length_exceeded", "messages"), []
    if step.kind == "invalid_request":
        text = msg or "Invalid value for 'temperature': must be between 0 and 2 (rehearsal)."
        return 400, _error_body(text, "invalid_request_error", "invalid_value", "temperature"), []
    if step.kind == "unknown_model":
        text = msg or f"The model `{name}` does not exist or you do not have access to it."
        return 404, _error_body(text, "invalid_request_error", "model_not_found"), []
    if step.kind == "server_error":
        status = step.status or 500
        default = {
            502: "Bad gateway.",
            503: "The server is overloaded or not ready yet.",
        }.get(status, "The server had an error while processing your request. Sorry about that!")
        return status, _error_body(msg or default, "server_error", None), []
    raise AssertionError(f"not an error kind: {step.kind}")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _seconds_text(ms: float) -> str:
    return _number_text(round(ms / 1000.0, 6))


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, notices the client leaving."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.id = next(server.connection_ids)
        self.buffer = bytearray()
        self.pending: collections.deque[_Request] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.gone: asyncio.Future[float] = server.loop.create_future()
        self.closing = False
        self.continue_sent = False

    # asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_gone()
        self.server.connections.discard(self)

    def eof_received(self) -> bool:
        # An HTTP client half-closing has given up on us: treat it as gone.
        self._mark_gone()
        return False

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        try:
            self._parse_requests()
        except _BadRequest as exc:
            self._send_raw(exc.status, _error_body(str(exc), "invalid_request_error", None), keep_alive=False)
            self._close()
            return
        if self.worker is None:
            try:
                self._answer_inline()
            except Exception:  # a bug here must show, and must not wedge the connection
                self._fail()

    # request flow ------------------------------------------------------------

    def _mark_gone(self) -> None:
        if not self.gone.done():
            self.gone.set_result(time.monotonic())

    def _parse_requests(self) -> None:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise _BadRequest(431, "request head too large")
                return
            method, path, headers, keep_alive = _parse_head(bytes(self.buffer[:end]))
            if "chunked" in headers.get("transfer-encoding", "").lower():
                raise _BadRequest(411, "chunked request bodies are not supported; send Content-Length")
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _BadRequest(400, "bad Content-Length") from None
            if length < 0 or length > MAX_BODY_BYTES:
                raise _BadRequest(413, "request body too large")
            start = end + 4
            if len(self.buffer) < start + length:
                if headers.get("expect", "").lower() == "100-continue" and not self.continue_sent:
                    self.continue_sent = True  # curl waits for this before sending a large body
                    if self.transport is not None:
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self.continue_sent = False
            body = bytes(self.buffer[start:start + length])
            del self.buffer[:start + length]
            headers.pop("authorization", None)  # never kept, never logged
            headers.pop("api-key", None)
            self.pending.append(_Request(method, path, headers, body, keep_alive))

    def _answer_inline(self) -> None:
        """Answer what needs no waiting right here; hand the rest to a task, keeping order."""
        while self.pending and not self.closing:
            request = self.pending.popleft()
            job = self.server.handle(self, request)
            if job is not None:
                self.worker = self.server.loop.create_task(self._work(job))
                return

    async def _work(self, job: Any) -> None:
        try:
            await job
            while self.pending and not self.closing:
                request = self.pending.popleft()
                job = self.server.handle(self, request)
                if job is not None:
                    await job
        except (ConnectionError, asyncio.CancelledError):
            self._close()
        except Exception:
            self._fail()
        finally:
            self.worker = None

    def _fail(self) -> None:
        from loguru import logger

        logger.exception("rehearsal provider: internal error while answering; closing the connection")
        self._send_raw(500, _error_body("rehearsal provider internal error", "server_error", None), keep_alive=False)
        self._close()

    # writing -----------------------------------------------------------------

    def _send_raw(
        self,
        status: int,
        body: bytes,
        *,
        keep_alive: bool,
        content_type: str = "application/json",
        extra: Iterable[tuple[str, str]] = (),
        request_id: int | None = None,
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}", f"content-length: {len(body)}"]
        if request_id is not None:
            head.append(f"x-request-id: req_rehearsal_{request_id}")
        head.extend(f"{k}: {v}" for k, v in extra)
        if not keep_alive:
            head.append("connection: close")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if not keep_alive:
            self._close()

    def _close(self, reset: bool = False) -> None:
        self.closing = True
        self.pending.clear()
        if self.transport is None or self.transport.is_closing():
            return
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close with RST, like a proxy killing the connection.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.transport.close()

    async def wait_or_gone(self, seconds: float) -> float | None:
        """Sleep ``seconds``; return the monotonic time the client left if it left first.

        A timer and a callback on one future, rather than ``wait_for(shield(...))``:
        this runs for every delayed answer, and two tasks per request showed up
        in the batch benchmark's profile.
        """
        if self.gone.done():
            return self.gone.result()
        loop = self.server.loop
        waiter: asyncio.Future[float | None] = loop.create_future()

        def settle(value: float | None) -> None:
            if not waiter.done():
                waiter.set_result(value)

        def on_gone(gone: asyncio.Future[float]) -> None:
            settle(gone.result())

        timer = loop.call_later(seconds, settle, None)
        self.gone.add_done_callback(on_gone)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.gone.remove_done_callback(on_gone)


class _Server:
    """The request handlers; runs entirely on one event loop."""

    def __init__(self, state: _State, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.connections: set[_Connection] = set()
        self.connection_ids = itertools.count(1)

    def handle(self, conn: _Connection, request: _Request) -> Any:
        """Answer ``request`` now, or return a coroutine that will (for waits and socket faults)."""
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "POST" and path.endswith("/chat/completions"):
            return self._completion(conn, request)
        if request.method == "GET" and path.endswith("/models"):
            data = [{"id": lane, "object": "model", "owned_by": "rehearsal"} for lane, _ in self.state.script.lanes if lane != "*"]
            conn._send_raw(200, json.dumps({"object": "list", "data": data}).encode(), keep_alive=request.keep_alive)
            return None
        if request.method == "GET" and path in ("", "/health", "/v1", "/v1/health"):
            conn._send_raw(200, b'{"status":"ok"}', keep_alive=request.keep_alive)
            return None
        status = 404 if request.method in ("GET", "POST") else 405
        self.state.log_other(model=None, kind="not_found", user_text="", status=status, path=path, connection=conn.id,
                             responded_at=time.monotonic())
        message = f"Unknown request URL: {request.method} {path}. This rehearsal server serves POST /v1/chat/completions."
        conn._send_raw(status, _error_body(message, "invalid_request_error", "unknown_url"), keep_alive=request.keep_alive)
        return None

    def _completion(self, conn: _Connection, request: _Request) -> Any:
        try:
            body = json.loads(request.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            record = self.state.log_other(model=None, kind="bad_json", user_text="", status=400, connection=conn.id,
                                          responded_at=time.monotonic())
            conn._send_raw(400, _error_body("We could not parse the JSON body of your request.", "invalid_request_error", None),
                           keep_alive=request.keep_alive, request_id=record.index)
            return None
        messages = body.get("messages")
        user_text = last_user_text(messages)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        shared = self.state.shared_text
        pairs = tuple((str(m.get("role")), shared(message_text(m))) for m in messages if isinstance(m, dict)) if isinstance(messages, list) else ()
        latency_s = self.state.latency_s

        def answer_now(step: Step, index: int) -> _Reply | None:
            if step.kind in ("hang", "trickle") or step.delay_ms or latency_s:
                return None
            return self._reply(body, step, index, model, user_text, pairs)

        step, record, reply = self.state.arrive(
            model, answer_now, user_text=user_text, connection=conn.id, stream=bool(body.get("stream")), messages=pairs,
            options=tuple((k, v) for k, v in body.items() if k != "messages"),
        )
        if reply is not None:
            self._send(conn, request, step, record, reply)
            return None
        return self._slow(conn, request, body, step, record, step.delay_ms / 1000.0 if step.delay_ms else latency_s)

    def _send(self, conn: _Connection, request: _Request, step: Step, record: RequestRecord, reply: _Reply) -> None:
        if reply.status is None:
            conn._close(reset=step.reset)
            return
        conn._send_raw(reply.status, reply.payload, keep_alive=request.keep_alive, content_type=reply.content_type,
                       extra=reply.extra, request_id=record.index)

    async def _slow(self, conn: _Connection, request: _Request, body: dict[str, Any], step: Step,
                    record: RequestRecord, delay_s: float) -> None:
        if step.kind == "hang":
            closed_at = await conn.gone
            self.state.update(record, closed_at=closed_at)
            conn._close()
            return
        if step.kind == "trickle":
            await self._trickle(conn, request, body, step, record)
            return
        closed_at = await conn.wait_or_gone(delay_s)
        if closed_at is not None:
            self.state.update(record, closed_at=closed_at)
            conn._close()
            return
        reply = self._reply(body, step, record.index, record.model, record.user_text, record.messages)
        # Log first: a client may act on the answer before this thread runs again.
        self.state.update(record, status=reply.status, responded_at=time.monotonic(), content=reply.content)
        self._send(conn, request, step, record, reply)

    async def _trickle(self, conn: _Connection, request: _Request, body: dict[str, Any], step: Step, record: RequestRecord) -> None:
        """Headers, then one space per interval (valid JSON whitespace), then the answer if a duration is set."""
        transport = conn.transport
        if transport is None or transport.is_closing():
            return
        self.state.update(record, status=200)
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
            + f"x-request-id: req_rehearsal_{record.index}\r\n\r\n".encode()
        )
        interval_s = step.interval_ms / 1000.0
        deadline = None if step.duration_ms is None else time.monotonic() + step.duration_ms / 1000.0
        while deadline is None or time.monotonic() < deadline:
            if transport.is_closing():
                break
            transport.write(b"1\r\n \r\n")
            wait = interval_s if deadline is None else max(0.0, min(interval_s, deadline - time.monotonic()))
            closed_at = await conn.wait_or_gone(wait)
            if closed_at is not None:
                self.state.update(record, closed_at=closed_at)
                conn._close()
                return
        if conn.gone.done() or transport.is_closing():
            self.state.update(record, closed_at=conn.gone.result() if conn.gone.done() else time.monotonic())
            return
        payload, content = self._completion_payload(body, Step("ok", text=step.text), record.index, record.model,
                                                    record.user_text, record.messages)
        self.state.update(record, responded_at=time.monotonic(), content=content)
        transport.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
        if not request.keep_alive:
            conn._close()

    def _reply(self, body: dict[str, Any], step: Step, index: int, model: str | None, user_text: str,
               messages: tuple[tuple[str, str], ...]) -> _Reply:
        kind = step.kind
        if kind in ("ok", "empty", "unparseable"):
            if body.get("stream"):
                payload, content = self._stream_payload(body, step, index, model, user_text)
                return _Reply(200, payload, content_type="text/event-stream", content=content)
            payload, content = self._completion_payload(body, step, index, model, user_text, messages)
            return _Reply(200, payload, content=content)
        if kind == "drop":
            return _Reply(None)
        if kind == "garbage":
            return _Reply(200, (step.raw if step.raw is not None else GARBAGE_BODY).encode())
        status, payload, extra = _fault_response(step, model)
        return _Reply(status, payload, tuple(extra))

    def _content(self, body: dict[str, Any], step: Step, user_text: str) -> str:
        if step.kind == "empty":
            return ""
        if step.kind == "unparseable":
            return step.text if step.text is not None else UNPARSEABLE_TEXT
        if step.raw is not None:
            return step.raw
        state = self.state
        fmt = state.formats.read(body, user_text)
        outputs = choose_outputs(fmt, user_text, state.answers, state.default_answer, text=step.text, output=step.output_map)
        return render(fmt, outputs)

    def _completion_payload(self, body: dict[str, Any], step: Step, index: int, model: str | None, user_text: str,
                            messages: tuple[tuple[str, str], ...]) -> tuple[bytes, str]:
        content = self._content(body, step, user_text)
        prompt_tokens = sum(len(text) for _, text in messages) // 4 + 1
        completion_tokens = len(content) // 4
        n = body.get("n")
        n = n if isinstance(n, int) and not isinstance(n, bool) and 1 < n <= 16 else 1
        content_json = _json_string(content)
        # A template rather than json.dumps of a dict: this runs once per request and
        # the only variable strings (content, model) go through the C string encoder.
        choices = ",".join(_CHOICE % (i, content_json) for i in range(n))
        payload = _COMPLETION % (index, int(time.time()), _json_string(model or "rehearsal"), choices,
                                 prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
        return payload.encode(), content

    def _stream_payload(self, body: dict[str, Any], step: Step, index: int, model: str | None, user_text: str) -> tuple[bytes, str]:
        content = self._content(body, step, user_text)
        base = {"id": f"chatcmpl-rehearsal-{index}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model or "rehearsal", "system_fingerprint": "fp_rehearsal"}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            tokens = len(content) // 4
            chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}})
        text = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        return text.encode(), content


_CHOICE = '{"index":%d,"message":{"role":"assistant","content":%s,"refusal":null},"logprobs":null,"finish_reason":"stop"}'
_COMPLETION = (
    '{"id":"chatcmpl-rehearsal-%d","object":"chat.completion","created":%d,"model":%s,"choices":[%s],'
    '"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d},"system_fingerprint":"fp_rehearsal"}'
)


class Provider:
    """A rehearsal provider on a free port of 127.0.0.1, served from a background thread.

    ``script`` is a list of steps or a model -> steps mapping (see :mod:`.script`);
    ``answers`` a list of ``{match, text}``/``{match, output}``; ``latency_ms``
    delays every answer that has no ``delay_ms`` of its own. Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        script: Any = None,
        answers: Any = None,
        default_answer: str = DEFAULT_ANSWER,
        *,
        latency_ms: float = 0.0,
        port: int = 0,
        host: str = HOST,
    ) -> None:
        self._state = _State(parse_script(script), parse_answers(answers), default_answer, latency_ms)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._handlers: _Server | None = None
        self._error: BaseException | None = None

    # lifecycle ---------------------------------------------------------------

    def start(self) -> Provider:
        if self._thread is not None:
            raise RuntimeError("this rehearsal provider is already started")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="rehearsal-provider", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> Provider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._handlers = _Server(self._state, loop)
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _Connection(self._handlers), self._host, self._port, backlog=2048, reuse_address=True)
            )
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._handlers is not None
        self._server.close()
        workers = []
        for conn in list(self._handlers.connections):
            conn._close()
            if conn.worker is not None:
                conn.worker.cancel()
                workers.append(conn.worker)
        # Let cancelled answers unwind here, not as "Task was destroyed" warnings at loop close.
        await asyncio.gather(*workers, return_exceptions=True)

    # what callers read -------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``: DSPy's ``api_base``."""
        if self._thread is None:
            raise RuntimeError("start the rehearsal provider first (use it as a context manager or call start())")
        return f"http://{self._host}:{self._port}/v1"

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, in arrival order."""
        with self._state.lock:
            return list(self._state.records)

    @property
    def count(self) -> int:
        """How many requests arrived so far (cheaper than ``len(requests)``)."""
        with self._state.lock:
            return len(self._state.records)

    def set_script(self, script: Any, *, reset_log: bool = False) -> None:
        """Replace the script and rewind it; keep the request log unless ``reset_log``."""
        self._state.set_script(parse_script(script), reset_log)

    def set_answers(self, answers: Any, default_answer: str | None = None) -> None:
        """Replace the answers (and the default answer when given)."""
        parsed = parse_answers(answers)
        with self._state.lock:
            self._state.answers = parsed
            if default_answer is not None:
                self._state.default_answer = default_answer

    def reset(self) -> None:
        """Clear the request log and rewind the script."""
        self._state.reset()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RequestRecord]:
        """Block until at least ``count`` requests arrived; return the log. Raises ``TimeoutError``."""
        with self._state.changed:
            if not self._state.changed.wait_for(lambda: len(self._state.records) >= count, timeout):
                raise TimeoutError(f"rehearsal provider saw {len(self._state.records)} requests, expected {count}, within {timeout}s")
            return list(self._state.records)

    def wait_closed(self, index: int, timeout: float = 5.0) -> RequestRecord:
        """Block until the server noticed the client close request ``index``'s connection; return its record."""
        def closed() -> bool:
            records = self._state.records
            return index < len(records) and records[index].closed_at is not None

        with self._state.changed:
            if not self._state.changed.wait_for(closed, timeout):
                raise TimeoutError(f"request {index}'s connection was not closed by the client within {timeout}s")
            return self._state.records[index]

    def wait_responded(self, index: int, timeout: float = 5.0) -> RequestRecord:
        """Block until the server finished answering request ``index`` (or the client left); return its record."""
        def done() -> bool:
            records = self._state.records
            return index < len(records) and (records[index].responded_at is not None or records[index].closed_at is not None)

        with self._state.changed:
            if not self._state.changed.wait_for(done, timeout):
                raise TimeoutError(f"request {index} was not answered within {timeout}s")
            return self._state.records[index]


def load_rehearsal_file(path: str) -> dict[str, Any]:
    """Read a rehearsal YAML file into Provider keyword arguments.

    The file is either a bare script (a list of steps, or a model -> steps
    mapping), or a mapping with any of ``script``, ``answers``,
    ``default_answer`` and ``latency_ms``.
    """
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if isinstance(data, Mapping) and set(data) & {"script", "answers", "default_answer", "latency_ms"}:
        unknown = sorted(set(data) - {"script", "answers", "default_answer", "latency_ms"})
        if unknown:
            raise ValueError(f"{path}: unknown key {unknown[0]!r}; a rehearsal file has script, answers, default_answer, latency_ms")
        return dict(data)
    return {"script": data}


def main(argv: list[str] | None = None) -> int:
    """Serve a rehearsal provider as a process until SIGTERM or SIGINT."""
    import argparse
    import signal
    import sys

    from .script import ScriptError

    parser = argparse.ArgumentParser(prog="python -m runner.rehearsal.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free port, printed on stdout)")
    parser.add_argument("--script", help="YAML file: a list of steps, a model -> steps mapping, or {script, answers, ...}")
    parser.add_argument("--latency-ms", type=float, default=None, help="delay before every answer without its own delay_ms")
    args = parser.parse_args(argv)

    options: dict[str, Any] = {}
    try:
        if args.script:
            options = load_rehearsal_file(args.script)
        if args.latency_ms is not None:
            options["latency_ms"] = args.latency_ms
        provider = Provider(port=args.port, **options)
    except (OSError, ValueError) as exc:  # ScriptError is a ValueError; yaml errors are wrapped below
        print(f"rehearsal: {args.script}: {exc}" if isinstance(exc, ScriptError) else f"rehearsal: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # yaml.YAMLError and friends: one line, no traceback
        print(f"rehearsal: {args.script}: {exc}".replace("\n", " "), file=sys.stderr)
        return 2

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with provider:
        print(f"listening on {provider.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
