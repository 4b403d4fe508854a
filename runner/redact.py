"""Keep API keys out of every output: one redactor for records, errors and logs.

Redaction happens twice, on purpose. At the source, every message that comes
from DSPy or a provider (an auth error may echo the key it refused) passes
through :func:`redact` before it becomes a :class:`~runner.errors.RunnerError`
or part of a result record. At the sink, the log handlers of
:mod:`runner.logs` run every formatted line through it again, so a secret that
reaches a log by a path nobody thought of is still masked.

The secrets are the values of the environment variables a policy names
(``model.api_key_env``), registered when an executor is built, plus anything
shaped like an OpenAI-style key (``sk-...``). Importing this module is cheap.
"""

from __future__ import annotations

import os
import re
import threading

MASK = "***"

_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
"""Tokens that look like provider keys even when no policy named them."""

_MIN_SECRET_LEN = 4
"""Shorter values are not masked: masking every 'a' would destroy the text and protect nothing."""

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None


def register_env(*names: str | None) -> None:
    """Mask from now on the current values of the named environment variables."""
    register_values(*(os.environ.get(name) for name in names if name))


def register_values(*values: str | None) -> None:
    """Mask these exact strings from now on (process-wide: a key is a secret for every sink)."""
    global _secrets, _pattern
    fresh = {v for v in values if v and len(v) >= _MIN_SECRET_LEN}
    if not fresh - _secrets:
        return
    with _lock:
        _secrets = _secrets | fresh
        # Longest first, so that a key containing another key is masked whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def redact(text: object) -> str:
    """``text`` as a string with every known secret and key-shaped token replaced by ``***``."""
    out = text if isinstance(text, str) else str(text)
    pattern = _pattern
    if pattern is not None:
        out = pattern.sub(MASK, out)
    return _KEY_SHAPED.sub(MASK, out)
