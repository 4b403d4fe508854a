"""The one boundary where DSPy's exceptions become :class:`~runner.errors.RunnerError`.

Everything above this module speaks error classes (``rate_limit``, ``timeout``...),
never DSPy types. The table is ordered most specific first, because DSPy's
classes nest (``ContextWindowExceededError`` and ``LMUnsupportedModelError``
are kinds of ``LMInvalidRequestError``; every provider error is an
``LMProviderError``). Anything the table does not know becomes ``internal``:
it is reported with its type and never retried, never silently dropped.

Provider text is redacted before it enters a message (an auth error may echo
the key), and every translation keeps the original as ``__cause__`` (the
executor raises ``... from exc``). Imports DSPy: only the executor imports this.
"""

from __future__ import annotations

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
    LMStreamAssemblyError,
    LMTimeoutError,
    LMTransportError,
    LMUnexpectedError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
)

from dspy._vendor.lm15.transports import ConnectTimeout, ReadTimeout, WriteTimeout

from .errors import ErrorContext, RunnerError
from .redact import redact

_MAX_DETAIL = 300
"""Provider text kept in a message: enough to diagnose, short enough for one log line."""

TABLE: tuple[tuple[type[BaseException], str], ...] = (
    (ContextWindowExceededError, "context_window"),
    (LMUnsupportedModelError, "unknown_model"),
    (LMInvalidRequestError, "invalid_request"),
    (LMRateLimitError, "rate_limit"),
    (LMBillingError, "quota_exceeded"),
    (LMAuthError, "auth"),
    (LMTimeoutError, "timeout"),
    (LMServerError, "server"),
    (LMTransportError, "transport"),
    # An incomplete stream is a reply cut short on the wire, whatever DSPy files it under.
    (LMStreamAssemblyError, "transport"),
    (LMNotConfiguredError, "auth"),
    (LMConfigurationError, "config"),
    (LMUnsupportedFeatureError, "invalid_request"),
    (TimeoutError, "timeout"),  # asyncio.TimeoutError and socket.timeout are this class since 3.11
    (ImportError, "dependency"),
)
"""DSPy exception type -> error class, most specific first. AdapterParseError and the
bare LMProviderError need a look at the instance and are handled in :func:`error_class`."""


def error_class(exc: BaseException) -> str:
    """The runner's name for ``exc``: a provider error class, or ``internal``."""
    if isinstance(exc, AdapterParseError):
        return "empty_response" if not str(exc.lm_response or "").strip() else "parse_error"
    if isinstance(exc, LMTransportError) and _caused_by_socket_timeout(exc):
        # lm15 files its own read/connect timeouts under LMTransportError (LiteLLM says LMTimeoutError):
        # the class follows what happened, not which engine saw it.
        return "timeout"
    for kind, name in TABLE:
        if isinstance(exc, kind):
            return name
    if isinstance(exc, LMProviderError):
        # A provider error lm15 had no finer class for: a status we can still read.
        status = exc.status or 0
        return "invalid_request" if 400 <= status < 500 else "server"
    # LMUnexpectedError (an engine bug) lands here on purpose, with everything else unknown.
    return "internal"


def _caused_by_socket_timeout(exc: BaseException) -> bool:
    seen = 0
    cause = exc.__cause__
    while cause is not None and seen < 8:
        if isinstance(cause, (ReadTimeout, ConnectTimeout, WriteTimeout)):
            return True
        cause, seen = cause.__cause__, seen + 1
    return False


def classify(exc: BaseException, context: ErrorContext) -> RunnerError:
    """Translate ``exc`` into a :class:`RunnerError` carrying ``context``; the caller raises it ``from exc``."""
    code = error_class(exc)
    retry_after = getattr(exc, "retry_after", None) if code == "rate_limit" else None
    return RunnerError(code, _message(code, exc, context), context=context, retry_after_s=_seconds(retry_after))


def _message(code: str, exc: BaseException, context: ErrorContext) -> str:
    where = f" from {context.model}" if context.model else ""
    if isinstance(exc, AdapterParseError):
        answer = str(exc.lm_response or "").strip()
        detail = f"the answer {redact(answer[:120])!r} has none of the fields the signature expects" if answer else "the answer was empty"
    else:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        # lm15 appends its own remedies ("To fix: ... retry with backoff"); the runner's fix replaces them.
        detail = str(detail).split(" To fix:", 1)[0].split("\nTo fix:", 1)[0]
        detail = redact(" ".join(detail.split()))
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    if code == "internal" or isinstance(exc, LMUnexpectedError):
        return f"unexpected {type(exc).__module__}.{type(exc).__qualname__}{where}: {detail}"
    return f"{code}{where}: {detail}"


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value >= 0 and value == value and value != float("inf") else None
