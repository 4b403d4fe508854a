"""Problems found in a policy file: values, not exceptions.

Checking a policy collects every problem instead of stopping at the first, so
that one bad key never hides the next and ``dspy-run validate`` can print them
all, one line each, as ``FILE:LINE:COL: message``. A problem's message says
what is wrong and ends with how to fix it; it never repeats a secret.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy file, pinned to the key or value at fault (1-based line and column)."""

    file: str
    line: int
    col: int
    code: str  # a short stable slug, e.g. "unknown-key", "yaml-syntax"; for machines and tests
    message: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def format(self) -> str:
        """The one-line human form; warnings say so, errors need no prefix (the compiler convention)."""
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }


SECRET_PREFIX = re.compile(r"(?:^|[^A-Za-z0-9])(sk-|sk_|rk_|pk_|ghp_|gho_|github_pat_|xox[abpr]-|AIza|AKIA|hf_)[A-Za-z0-9_\-]{12,}")


def looks_secret(text: str) -> bool:
    """A value that is probably an API key: a known key prefix, or a long random-looking token."""
    if SECRET_PREFIX.search(text):
        return True
    token = text.strip()
    if len(token) < 24 or any(c.isspace() for c in token) or "/" in token:
        return False
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return has_digit and has_alpha and entropy >= 3.5 and token.count("_") <= 2


def shown(value: Any, limit: int = 60) -> str:
    """A value quoted for a message: one line (repr escapes newlines), shortened, and a secret never repeated."""
    if isinstance(value, str):
        if looks_secret(value):
            return "a value that looks like a secret (not repeated here)"
        return repr(value if len(value) <= limit else value[: limit - 3] + "...")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {len(str(abs(value)))}-digit number"
    return repr(value)


def shown_name(name: str, limit: int = 60) -> str:
    """A key or field name for a message, in backticks: written as is when plain, else escaped like :func:`shown`."""
    if name.isprintable() and "`" not in name and len(name) <= limit and not looks_secret(name):
        return f"`{name}`"
    return shown(name, limit)
