"""The rehearsal provider, driven by real DSPy over real HTTP on 127.0.0.1.

Each fault kind is checked end to end: the exception DSPy raises, the number
of requests the server saw, and for hang/trickle that the client's deadline
closed the socket and the server noticed. These pin the facts the executor's
classifier relies on (see /work/notes/dspy-facts.md).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import dspy
import pytest
from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    LMBillingError,
    LMInvalidRequestError,
    LMProviderError,
    LMRateLimitError,
    LMServerError,
    LMTransportError,
    LMUnsupportedModelError,
)

from runner.rehearsal import KINDS, Provider, ScriptError, parse_script

SECRET = "sk-test-secret-key-1234"


def make_lm(provider: Provider, model: str = "openai/test-model", **kwargs) -> dspy.LM:
    options = {"api_base": provider.base_url, "api_key": SECRET, "num_retries": 0, "cache": False, **kwargs}
    return dspy.LM(model, **options)


def predict(provider: Provider, question: str = "What is the capital of France?", signature: str = "question -> answer",
            module=dspy.Predict, adapter=None, **lm_kwargs):
    with dspy.context(lm=make_lm(provider, **lm_kwargs), adapter=adapter):
        return module(signature)(question=question)


def raised(provider: Provider, **kwargs) -> Exception:
    with pytest.raises(Exception) as info:
        predict(provider, **kwargs)
    return info.value


# ok and answers ---------------------------------------------------------------


def test_ok_answers_the_matching_text_through_chat_adapter():
    """An `ok` step answers with the first matching answer, parsed by ChatAdapter, in one request."""
    with Provider(answers=[{"match": "(?i)capital of spain", "text": "Madrid"},
                           {"match": "(?i)capital of france", "text": "Paris"}]) as provider:
        assert predict(provider).answer == "Paris"
        [record] = provider.requests
    assert (record.kind, record.status, record.model, record.index) == ("ok", 200, "test-model", 0)
    assert "capital of France" in record.user_text
    assert record.responded_at >= record.arrived_at


def test_ok_uses_default_answer_and_reasoning_filler_for_chain_of_thought(provider):
    """Without a matching answer, the default answer fills the answer field and a filler the reasoning."""
    result = predict(provider, question="anything", module=dspy.ChainOfThought)
    assert result.answer == "This is a rehearsal answer."
    assert result.reasoning and result.reasoning != result.answer


def test_ok_answers_json_adapter_with_a_json_object(provider):
    """JSONAdapter requests get a JSON object with every output field."""
    provider.set_answers([{"match": "France", "output": {"answer": "Paris", "confidence": "high"}}])
    result = predict(provider, signature="question -> answer, confidence", adapter=dspy.JSONAdapter())
    assert (result.answer, result.confidence) == ("Paris", "high")
    assert json.loads(provider.requests[0].content) == {"answer": "Paris", "confidence": "high"}


def test_ok_fills_typed_output_fields_with_parseable_values(provider):
    """Typed outputs (int, bool, list, Literal) get fillers of their type, so the prediction parses."""
    result = predict(provider, signature="question -> count: int, sure: bool, tags: list[str], mood: Literal['calm', 'angry']")
    assert (result.count, result.sure, result.tags, result.mood) == (1, True, [], "calm")


def test_ok_step_text_overrides_answers():
    """A step's `text` replaces the configured answer for that request only."""
    with Provider(script=[{"do": "ok", "text": "Lyon"}], answers=[{"match": "France", "text": "Paris"}]) as provider:
        assert predict(provider).answer == "Lyon"
        assert predict(provider).answer == "Paris"


def test_ok_delay_holds_the_answer_back():
    """`delay_ms` delays the response by at least that long."""
    with Provider(script=[{"do": "ok", "delay_ms": 60}]) as provider:
        predict(provider)
        [record] = provider.requests
    assert record.responded_at - record.arrived_at >= 0.06


# error kinds -----------------------------------------------------------------


def test_rate_limit_carries_retry_after_then_script_runs_out_to_ok():
    """`rate_limit` raises LMRateLimitError with retry_after from the header; after `times` it answers ok."""
    with Provider(script=[{"do": "rate_limit", "times": 2, "retry_after_ms": 50}]) as provider:
        for _ in range(2):
            error = raised(provider)
            assert type(error) is LMRateLimitError
            assert (error.status, error.retry_after) == (429, 0.05)
        assert predict(provider).answer
        assert [r.kind for r in provider.requests] == ["rate_limit", "rate_limit", "ok"]
        assert [r.status for r in provider.requests] == [429, 429, 200]


def test_fractional_retry_after_seconds_reach_dspy():
    """A retry_after_ms of 1500 arrives as retry_after == 1.5 seconds."""
    with Provider(script=[{"do": "rate_limit", "retry_after_ms": 1500}]) as provider:
        assert raised(provider).retry_after == 1.5


def test_rate_limit_without_retry_after_sends_no_hint():
    """Without `retry_after_ms` no Retry-After header is sent, so DSPy's retry_after is None."""
    with Provider(script=[{"do": "rate_limit"}]) as provider:
        error = raised(provider)
        assert type(error) is LMRateLimitError and error.retry_after is None


@pytest.mark.parametrize(
    ("step", "exception", "status"),
    [
        ({"do": "quota"}, LMBillingError, 429),
        ({"do": "auth"}, LMAuthError, 401),
        ({"do": "context_window"}, ContextWindowExceededError, 400),
        ({"do": "invalid_request"}, LMInvalidRequestError, 400),
        ({"do": "unknown_model"}, LMUnsupportedModelError, 404),
        ({"do": "server_error"}, LMServerError, 500),
        ({"do": "server_error", "status": 502}, LMServerError, 502),
        ({"do": "server_error", "status": 503}, LMServerError, 503),
        ({"do": "garbage"}, LMProviderError, 200),
    ],
)
def test_error_kind_raises_its_dspy_exception(step, exception, status):
    """Each HTTP error kind reaches DSPy as exactly its typed exception, after exactly one request."""
    with Provider(script=[step]) as provider:
        error = raised(provider)
        assert type(error) is exception
        assert error.status == status
        assert len(provider.requests) == 1
        assert provider.requests[0].status == status


def test_auth_error_never_echoes_the_key():
    """Neither the 401 body nor the request log contain the API key the client sent."""
    with Provider(script=[{"do": "auth"}]) as provider:
        error = raised(provider)
        assert SECRET not in str(error)
        assert "sk-...abcd" in str(error)
        assert SECRET not in repr(provider.requests)


# 200s DSPy cannot use -----------------------------------------------------------


def test_empty_twice_raises_adapter_parse_error():
    """`empty` content fails ChatAdapter and its JSONAdapter re-ask: AdapterParseError after two requests."""
    with Provider(script=[{"do": "empty", "times": 2}]) as provider:
        assert type(raised(provider)) is AdapterParseError
        assert [(r.kind, r.content) for r in provider.requests] == [("empty", ""), ("empty", "")]


def test_empty_once_is_rescued_by_the_json_adapter_re_ask():
    """A single `empty` is absorbed: DSPy's JSONAdapter fallback sends a second request that gets `ok`."""
    with Provider(script=[{"do": "empty"}]) as provider:
        assert predict(provider).answer == "This is a rehearsal answer."
        assert [r.kind for r in provider.requests] == ["empty", "ok"]


def test_unparseable_raises_adapter_parse_error_in_one_request_without_fallback():
    """`unparseable` content raises AdapterParseError; without the JSON fallback DSPy sends only one request."""
    with Provider(script=[{"do": "unparseable", "times": "forever"}]) as provider:
        error = raised(provider, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False))
        assert type(error) is AdapterParseError
        assert len(provider.requests) == 1


# socket-level faults ---------------------------------------------------------------


@pytest.mark.parametrize("reset", [False, True])
def test_drop_closes_without_response(reset):
    """`drop` closes the connection (FIN or RST) after reading the request: LMTransportError, one request."""
    with Provider(script=[{"do": "drop", "reset": reset}]) as provider:
        error = raised(provider)
        assert type(error) is LMTransportError
        [record] = provider.requests
        assert (record.kind, record.status) == ("drop", None)


def test_hang_ends_at_the_lm_read_timeout_and_server_sees_the_close():
    """`hang` sends nothing; DSPy's read timeout raises LMTransportError and the server records the close."""
    with Provider(script=[{"do": "hang"}]) as provider:
        started = time.monotonic()
        error = raised(provider, timeout=0.15)
        assert type(error) is LMTransportError and "timed out" in str(error)
        record = provider.wait_closed(0, timeout=2)
        assert record.status is None
        assert 0.15 <= record.closed_at - started < 0.15 + 0.25


def test_hang_cancelled_by_an_outer_deadline_closes_the_socket():
    """Cancelling `acall` on a hang closes the connection within 50 ms of the deadline, and the server notices."""
    async def call(provider):
        with dspy.context(lm=make_lm(provider)):
            return await asyncio.wait_for(dspy.Predict("question -> answer").acall(question="q"), 0.2)

    with Provider(script=[{"do": "hang"}]) as provider:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            asyncio.run(call(provider))
        record = provider.wait_closed(0, timeout=2)
        assert 0.2 <= record.closed_at - started < 0.25
        assert len(provider.requests) == 1


def test_trickle_outlives_the_read_timeout_until_an_outer_deadline():
    """`trickle` keeps the LM read timeout from firing; only the outer deadline ends it, and the server sees the close."""
    async def call(provider):
        with dspy.context(lm=make_lm(provider, timeout=0.1)):
            return await asyncio.wait_for(dspy.Predict("question -> answer").acall(question="q"), 0.3)

    with Provider(script=[{"do": "trickle", "interval_ms": 20}]) as provider:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            asyncio.run(call(provider))
        record = provider.wait_closed(0, timeout=2)
        assert record.status == 200
        assert 0.3 <= record.closed_at - started < 0.3 + 0.1


def test_trickle_with_duration_ends_in_a_parseable_answer():
    """A `trickle` with `duration_ms` sends its bytes and then a proper completion DSPy parses."""
    with Provider(script=[{"do": "trickle", "interval_ms": 20, "duration_ms": 100}]) as provider:
        assert predict(provider, timeout=0.5).answer == "This is a rehearsal answer."
        [record] = provider.requests
        assert record.responded_at - record.arrived_at >= 0.1
        assert record.closed_at is None


# script routing and bookkeeping ---------------------------------------------------------


def test_model_mapping_routes_primary_and_fallback_separately():
    """A model -> steps mapping fails the primary (keyed with its provider prefix) while another model answers."""
    script = {"openai/primary": [{"do": "context_window", "times": "forever"}], "*": [{"do": "ok", "text": "from fallback"}]}
    with Provider(script=script) as provider:
        assert type(raised(provider, model="openai/primary")) is ContextWindowExceededError
        assert predict(provider, model="openai/backup").answer == "from fallback"
        assert [(r.model, r.lane, r.kind) for r in provider.requests] == [
            ("primary", "openai/primary", "context_window"), ("backup", "*", "ok")]


def test_set_script_rewinds_and_reset_clears_the_log(provider):
    """set_script replaces and rewinds the script keeping the log; reset clears the log and rewinds."""
    provider.set_script([{"do": "server_error"}])
    assert type(raised(provider)) is LMServerError
    provider.set_script([{"do": "quota"}])
    assert type(raised(provider)) is LMBillingError
    assert [r.kind for r in provider.requests] == ["server_error", "quota"]
    provider.reset()
    assert provider.requests == []
    assert type(raised(provider)) is LMBillingError
    provider.set_script([], reset_log=True)
    assert predict(provider).answer and [r.index for r in provider.requests] == [0]


def test_sequential_calls_reuse_one_keep_alive_connection(provider):
    """DSPy's sequential calls arrive on one TCP connection, so keep-alive works."""
    with dspy.context(lm=make_lm(provider)):
        for _ in range(3):
            dspy.Predict("question -> answer")(question="q")
    assert len({r.connection for r in provider.requests}) == 1
    assert len(provider.requests) == 3


def test_hundreds_of_concurrent_connections_are_all_answered():
    """300 simultaneous keep-alive connections with a 50 ms latency are all answered, in about one latency."""
    async def one(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        status = int((await reader.readline()).split()[1])
        writer.close()
        return status

    async def many(port: int) -> list[int]:
        return await asyncio.gather(*(one(port) for _ in range(300)))

    with Provider(latency_ms=50) as provider:
        started = time.monotonic()
        statuses = asyncio.run(many(provider.port))
        elapsed = time.monotonic() - started
        assert statuses == [200] * 300
        assert len(provider.requests) == 300
        assert len({r.connection for r in provider.requests}) == 300
    assert elapsed < 2.0  # serial handling would take 15 s


def test_plain_clients_get_plain_text_and_the_key_is_not_recorded(provider):
    """A non-DSPy client gets the default answer as plain content; Authorization never reaches the log."""
    connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=2)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.2})
    connection.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    reply = json.loads(connection.getresponse().read())
    connection.close()
    assert reply["choices"][0]["message"]["content"] == "This is a rehearsal answer."
    [record] = provider.requests
    assert (record.user_text, record.option("temperature")) == ("hello", 0.2)
    assert SECRET not in repr(record)


def test_bad_path_and_bad_json_get_openai_style_errors(provider):
    """Unknown URLs get 404 and unparseable bodies 400, both as OpenAI error JSON, and are logged."""
    connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=2)
    connection.request("POST", "/v1/completions", "{}")
    response = connection.getresponse()
    assert response.status == 404 and "error" in json.loads(response.read())
    connection.request("POST", "/v1/chat/completions", "{not json")
    response = connection.getresponse()
    assert response.status == 400 and "error" in json.loads(response.read())
    connection.close()
    assert [(r.kind, r.status) for r in provider.requests] == [("not_found", 404), ("bad_json", 400)]


def _raw_exchange(port: int, head: bytes, body: bytes, *, expect_continue: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(head)
        if expect_continue:
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        received = b""
        while b"data: [DONE]" not in received and b'"chat.completion"' not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_stream_requests_get_server_sent_events(provider):
    """A `stream: true` request gets SSE chunks carrying the answer, ending in [DONE]."""
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    reply = _raw_exchange(provider.port, b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body), body)
    head, _, events = reply.partition(b"\r\n\r\n")
    assert b"content-type: text/event-stream" in head
    chunks = [json.loads(line[6:]) for line in events.decode().splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "This is a rehearsal answer."
    assert events.rstrip().endswith(b"data: [DONE]") and provider.requests[0].stream


def test_expect_continue_is_answered_before_the_body():
    """A client sending `Expect: 100-continue` gets the interim 100 and then its answer."""
    with Provider() as provider:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        head = b"POST /v1/chat/completions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        reply = _raw_exchange(provider.port, head, body, expect_continue=True)
    assert reply.startswith(b"HTTP/1.1 200 OK")


def test_stop_releases_a_hanging_client_promptly():
    """Stopping the provider closes connections it is hanging on, so a stuck client is freed at once."""
    provider = Provider(script=[{"do": "hang"}]).start()
    body = json.dumps({"model": "m", "messages": []}).encode()
    with socket.create_connection(("127.0.0.1", provider.port), timeout=2) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        provider.wait_for_requests(1)
        started = time.monotonic()
        provider.stop()
        assert sock.recv(10) == b""
    assert time.monotonic() - started < 1.0


# script validation -------------------------------------------------------------------------


def test_every_kind_is_accepted_by_the_parser():
    """Each documented kind parses with defaults, and `forever`/null mean unbounded."""
    script = parse_script([{"do": kind} for kind in KINDS] + [{"do": "ok", "times": "forever"}, {"do": "ok", "times": None}])
    steps = script.steps("*")
    assert [s.kind for s in steps[:len(KINDS)]] == list(KINDS)
    assert steps[-1].times is None and steps[-2].times is None and steps[0].times == 1


def test_script_errors_list_every_problem_with_where_and_how():
    """A bad script reports every problem with its path, not just the first."""
    with pytest.raises(ScriptError) as info:
        parse_script([{"do": "rate-limit"}, {"do": "ok", "times": 0}, {"do": "hang", "delay_ms": 5},
                      {"do": "server_error", "status": 404}, "nonsense"])
    problems = [str(p) for p in info.value.problems]
    assert problems[0].startswith("script[0].do: unknown step kind 'rate-limit'; did you mean 'rate_limit'?")
    assert problems[1].startswith("script[1].times: must be a whole number")
    assert problems[2].startswith("script[2].delay_ms: unknown parameter for 'hang'")
    assert problems[3].startswith("script[3].status: must be an HTTP 5xx status")
    assert problems[4].startswith("script[4].do: unknown step kind 'nonsense'")
    assert len(problems) == 5


def test_script_must_be_a_list_or_a_model_mapping():
    """A script that is neither a list nor a model -> list mapping is refused with an example."""
    with pytest.raises(ScriptError, match=r"script: must be a list of steps"):
        parse_script("ok")
    with pytest.raises(ScriptError, match=r"script\['gpt'\]: must be a list of steps"):
        parse_script({"gpt": {"do": "ok"}})


# the server as a process --------------------------------------------------------------------


def test_server_runs_as_a_process_from_a_yaml_file(tmp_path):
    """`python -m runner.rehearsal.server` prints its URL, serves the YAML script, and exits 0 on SIGTERM."""
    script = tmp_path / "faults.yaml"
    script.write_text("script:\n  - do: server_error\n    status: 503\nanswers:\n  - match: hello\n    text: hi there\n")
    process = subprocess.Popen([sys.executable, "-m", "runner.rehearsal.server", "--port", "0", "--script", str(script)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:") and line.rstrip().endswith("/v1")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
        statuses = []
        for _ in range(2):
            connection.request("POST", "/v1/chat/completions", body)
            response = connection.getresponse()
            statuses.append((response.status, json.loads(response.read()).get("choices", [{}])[0].get("message", {}).get("content")))
        connection.close()
        assert statuses == [(503, None), (200, "hi there")]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0


def test_server_process_refuses_a_bad_script_in_one_line(tmp_path):
    """A bad script file stops the process with exit 2 and one line naming the problem, no traceback."""
    script = tmp_path / "bad.yaml"
    script.write_text("- do: explode\n")
    done = subprocess.run([sys.executable, "-m", "runner.rehearsal.server", "--script", str(script)],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "script[0].do: unknown step kind 'explode'" in done.stderr
