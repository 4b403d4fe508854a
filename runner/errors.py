"""The error vocabulary of dspy-run, defined once.

Every other part of the runner speaks these names: the policy schema's enum of
error classes is built from :data:`ERROR_CLASSES` (a test proves it), the
classifier maps DSPy's exceptions onto them, and result records carry them as
``code``. This module must stay importable without DSPy: ``validate`` and
``explain`` use it and must start fast.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """One kind of provider failure that a policy can retry or fall back on."""

    name: str
    retryable: bool  # in the default ``retry_on``: a transient failure worth another try
    description: str
    fix: str  # what an operator can do about it, the end of every message of this class


ERROR_CLASSES: dict[str, ErrorClass] = {
    c.name: c
    for c in (
        ErrorClass("rate_limit", True, "the provider answered 429: too many requests", "lower the request rate or raise the provider's limit"),
        ErrorClass("quota_exceeded", False, "the account's quota or billing is exhausted", "top up the account or fall back to another provider"),
        ErrorClass("auth", False, "the provider refused the API key", "check the key in the environment variable the policy names"),
        ErrorClass("timeout", True, "the provider did not answer within the deadline", "raise timeouts.attempt_ms or check the provider's status"),
        ErrorClass("server", True, "the provider failed with a 5xx error", "retry later or fall back to another model"),
        ErrorClass("transport", True, "the connection failed or was dropped before an answer", "check the network path and model.api_base"),
        ErrorClass("context_window", False, "the prompt is longer than the model's context window", "shorten the input or fall back to a model with a larger window"),
        ErrorClass("invalid_request", False, "the provider rejected the request as malformed", "check the model's settings (temperature, max_tokens) in the policy"),
        ErrorClass("unknown_model", False, "no provider serves this model name", "use a provider/model name that DSPy supports, e.g. openai/gpt-4o-mini"),
        ErrorClass("empty_response", False, "the model answered with nothing", "retry, or fall back to another model or a canned response"),
        ErrorClass("parse_error", False, "the model's answer could not be parsed into the signature's outputs", "retry, enable program.json_fallback, or fall back"),
    )
}
"""Provider error classes: the vocabulary of ``retry.retry_on`` and ``fallbacks[].on``."""

ANY = "any"
"""The wildcard a policy may use in ``retry_on`` and ``on``: every provider error class."""

POLICY_ERROR_NAMES: tuple[str, ...] = (*ERROR_CLASSES, ANY)
"""Every name a policy may write where an error class is expected, in schema order."""

DEFAULT_RETRY_ON: tuple[str, ...] = tuple(c.name for c in ERROR_CLASSES.values() if c.retryable)

RUNNER_CODES: dict[str, str] = {
    **{c.name: c.fix for c in ERROR_CLASSES.values()},
    "empty_input": "give every input field a non-empty value",
    "invalid_input": "pass exactly the input fields of program.signature",
    "retry_exhausted": "every attempt and fallback failed; see the attempts and add a fallback step",
    "config": "fix the policy and run `dspy-run validate` on it",
    "dependency": "reinstall the project: pip install -e .",
    "internal": "this is a bug in dspy-run; please report it with the log",
}
"""Every ``code`` a :class:`RunnerError` may carry, with the fix its message ends in."""


def expand(names: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Resolve a policy's list of error classes, ``any`` included, to concrete class names."""
    if ANY in names:
        return frozenset(ERROR_CLASSES)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where a failure happened: kept with the error so that a log line or record can say it."""

    operation: str
    attempt: int | None = None
    model: str | None = None
    timestamp: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"))


class RunnerError(Exception):
    """A failure with a stable ``code`` from :data:`RUNNER_CODES` and the context it happened in.

    The message says what went wrong and ends with what to do about it; the
    fix is appended from the registry unless the caller gave a better one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        context: ErrorContext | None = None,
        retry_after_s: float | None = None,
        fix: str | None = None,
    ) -> None:
        if code not in RUNNER_CODES:
            raise ValueError(f"unknown runner error code {code!r}")
        self.code = code
        self.detail = message
        self.fix = fix if fix is not None else RUNNER_CODES[code]
        self.context = context or ErrorContext(operation="run")
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.detail}; {self.fix}" if self.fix else self.detail

    def __repr__(self) -> str:
        return f"RunnerError({self.code!r}, {self.detail!r})"
