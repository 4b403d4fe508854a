"""The classification boundary: every DSPy exception DSPy 3.4 raises maps to one error class, most specific first."""

from __future__ import annotations

import pytest
from dspy._vendor.lm15.transports import ReadError, ReadTimeout
from dspy.signatures.signature import make_signature
from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    LMBillingError,
    LMConfigurationError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMProviderError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
    LMUnexpectedError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
)

from runner.classify import TABLE, classify, error_class
from runner.errors import RUNNER_CODES, ErrorContext
from runner.redact import register_values

CTX = ErrorContext(operation="predict", attempt=2, model="openai/test-model")
SIGNATURE = make_signature("question -> answer")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (LMRateLimitError("slow down", status=429, retry_after=1.5), "rate_limit"),
        (LMBillingError("no credit", status=429), "quota_exceeded"),
        (LMAuthError("bad key", status=401), "auth"),
        (ContextWindowExceededError(model="m", status=400), "context_window"),
        (LMTimeoutError("took too long", status=408), "timeout"),
        (LMServerError("boom", status=503), "server"),
        (LMTransportError("connection reset"), "transport"),
        (LMUnsupportedModelError("no such model", status=404), "unknown_model"),
        (LMInvalidRequestError("bad temperature", status=400), "invalid_request"),
        (LMUnsupportedFeatureError("no tools"), "invalid_request"),
        (LMNotConfiguredError("no key configured"), "auth"),
        (LMConfigurationError("bad setting"), "config"),
        (LMProviderError("the reply is not JSON", status=200), "server"),
        (LMProviderError("teapot", status=418), "invalid_request"),
        (TimeoutError(), "timeout"),
        (ImportError("no module named litellm"), "dependency"),
        (AdapterParseError("ChatAdapter", SIGNATURE, ""), "empty_response"),
        (AdapterParseError("ChatAdapter", SIGNATURE, "I like turtles"), "parse_error"),
        (LMUnexpectedError("engine bug"), "internal"),
        (KeyError("surprise"), "internal"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_each_dspy_exception_has_its_class(exc, code):
    """Each DSPy 3.4 exception type lands on the error class the policy language names for it."""
    assert error_class(exc) == code
    assert code in RUNNER_CODES


def test_subclasses_are_matched_before_their_parents():
    """The table lists every class before any of its base classes, so the most specific entry always wins."""
    kinds = [kind for kind, _ in TABLE]
    for i, kind in enumerate(kinds):
        for later in kinds[i + 1 :]:
            assert not issubclass(later, kind) or later is kind, f"{later.__name__} is shadowed by {kind.__name__}"


def test_lm15_read_timeout_is_a_timeout_not_a_transport_error():
    """lm15 files a socket read timeout under LMTransportError; the cause chain makes it a timeout."""
    inner = ReadTimeout("read timed out waiting for headers")
    outer = LMTransportError("read timed out")
    outer.__cause__ = inner
    assert error_class(outer) == "timeout"
    plain = LMTransportError("read failed")
    plain.__cause__ = ReadError("connection reset")
    assert error_class(plain) == "transport"


def test_rate_limit_keeps_retry_after_and_context():
    """The translated error keeps the provider's Retry-After (seconds) and the attempt's context."""
    error = classify(LMRateLimitError("slow down", status=429, retry_after=1.5), CTX)
    assert (error.code, error.retry_after_s, error.context) == ("rate_limit", 1.5, CTX)
    assert error.message.startswith("rate_limit from openai/test-model: slow down")
    assert error.message.endswith(RUNNER_CODES["rate_limit"])


def test_message_drops_lm15_remedies_and_ends_with_the_runner_fix():
    """lm15's own 'To fix:' advice is cut so that the message ends with exactly one fix, the runner's."""
    error = classify(LMServerError("overloaded To fix: - retry with backoff in your application", status=503), CTX)
    assert "To fix" not in error.message
    assert error.message == f"server from openai/test-model: overloaded; {RUNNER_CODES['server']}"


def test_unmapped_exception_is_internal_and_names_its_type():
    """An exception nobody mapped becomes `internal` with its type in the message, never a silent pass."""
    error = classify(ZeroDivisionError("division by zero"), CTX)
    assert error.code == "internal"
    assert "builtins.ZeroDivisionError" in error.message


def test_provider_text_is_redacted_before_it_enters_the_message():
    """An auth error that echoes the key (or any sk- token) carries *** instead, at the source."""
    register_values("canary-secret-value-123")
    error = classify(LMAuthError("Incorrect API key canary-secret-value-123 and sk-abcdefghijklmnop"), CTX)
    assert "canary-secret-value-123" not in error.message
    assert "sk-abcdefghijklmnop" not in error.message
    assert error.message.count("***") == 2


def test_parse_error_message_quotes_the_answer_briefly():
    """A parse error says what the model answered (truncated) rather than DSPy's multi-paragraph dump."""
    error = classify(AdapterParseError("ChatAdapter", SIGNATURE, "x" * 1000), CTX)
    assert error.code == "parse_error"
    assert len(error.message) < 400 and "none of the fields" in error.message
