"""Problems found in a policy file: values, not exceptions.

Checking a policy collects every problem instead of stopping at the first, so
that one bad key never hides the next and ``dspy-run validate`` can print them
all, one line each, as ``FILE:LINE:COL: message``. A problem's message says
what is wrong and ends with how to fix it; it never repeats a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def sort_key(problem: Problem) -> tuple[str, int, int, str]:
    return (problem.file, problem.line, problem.col, problem.message)
