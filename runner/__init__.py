"""dspy-run: a declarative resilience runner for DSPy.

Importing the package is cheap: DSPy is imported only when an executor is
built, so ``validate`` and ``explain`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ERROR_CLASSES, ErrorContext, RunnerError
from .policy import Policy
from .result import Attempt, ErrorInfo, Result

if TYPE_CHECKING:
    from .executor import Executor
    from .loader import load_policy

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
    if name == "load_policy":
        from .loader import load_policy

        return load_policy
    if name == "Executor":
        from .executor import Executor

        return Executor
    raise AttributeError(name)
