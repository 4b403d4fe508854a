"""Rehearsal: a scriptable OpenAI-compatible provider on 127.0.0.1.

It answers like a real provider, including its failures (429 with Retry-After,
5xx, hangs, trickles, dropped connections, unparseable answers), so a policy
can be tried against every fault before production meets one. Tests use it to
drive real DSPy over real HTTP; ``dspy-run rehearse`` and the offline demo
model ``rehearsal/...`` use it for users.

Importing this package is cheap: it needs neither DSPy nor LiteLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .answers import DEFAULT_ANSWER, Answer, parse_answers
from .script import FOREVER, KIND_HELP, KINDS, Problem, Script, ScriptError, Step, check_script, parse_script

if TYPE_CHECKING:
    from .server import Provider, RequestRecord, load_rehearsal_file

__all__ = [
    "DEFAULT_ANSWER",
    "FOREVER",
    "KINDS",
    "KIND_HELP",
    "Answer",
    "Problem",
    "Provider",
    "RequestRecord",
    "Script",
    "ScriptError",
    "Step",
    "check_script",
    "load_rehearsal_file",
    "parse_answers",
    "parse_script",
]


_SERVER_NAMES = frozenset({"Provider", "RequestRecord", "load_rehearsal_file"})


def __getattr__(name: str) -> Any:
    # Imported on first use so that `python -m runner.rehearsal.server` does not
    # find its own module already imported by the package (runpy warns about that).
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
