"""dspy-run: a declarative resilience runner for DSPy.

Importing the package is cheap: DSPy is imported only when an executor is
built, so ``validate`` and ``explain`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ERROR_CLASSES, ErrorContext, RunnerError

if TYPE_CHECKING:
    from .executor import Executor
    from .loader import load_policy
    from .policy import Policy
    from .result import Attempt, ErrorInfo, Result

_LAZY = {
    "load_policy": "loader",
    "Executor": "executor",
    "Policy": "policy",
    "Attempt": "result",
    "ErrorInfo": "result",
    "Result": "result",
}

__all__ = [
    "ERROR_CLASSES",
    "Attempt",
    "ErrorContext",
    "ErrorInfo",
    "Executor",
    "Policy",
    "Result",
    "RunnerError",
    "load_policy",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: `dspy-run validate` starts in a pre-commit hook, where every module counts.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
