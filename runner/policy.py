"""The compiled policy: frozen, typed, units resolved once.

Nothing below the loader sees a raw dict. :func:`compile_policy` turns a dict
that has already passed the schema and the semantic checks into these value
objects; times are held in seconds (the unit asyncio and stamina speak), error
class lists are expanded (``any``) into frozensets, regexes are compiled.
The defaults live in :data:`DEFAULTS`; a test proves the schema's ``default``
annotations say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import DEFAULT_RETRY_ON, expand
from .regexsafe import compile_match
from .signature import Signature, parse_signature

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "model": {"api_base": None, "api_key_env": None, "temperature": None, "max_tokens": None, "cache": False},
        "program": {"signature": "question -> answer", "module": "predict", "adapter": "chat", "state": None, "json_fallback": False},
        "retry": {
            "max_attempts": 3,
            "retry_on": list(DEFAULT_RETRY_ON),
            "backoff": {"base_ms": 1000, "multiplier": 2.0, "max_ms": 30000, "jitter": 0.15},
            "respect_retry_after": True,
            "max_retry_after_ms": 60000,
        },
        "timeouts": {"attempt_ms": 30000, "total_ms": None},
        "fallbacks": [],
        "logging": {"level": "INFO", "format": "text"},
        "limits": {"max_input_chars": 100000, "requests_per_second": None, "max_in_flight": None},
        "rehearsal": {"script": [], "answers": [], "default_answer": "This is a rehearsal answer.", "scenarios": []},
    }
)

_INHERITED_MODEL_KEYS = ("temperature", "max_tokens", "cache")
"""Generation settings a fallback model takes from the primary unless it sets them.

Connection settings (``api_base``, ``api_key_env``) are never inherited: a
fallback on another provider must not receive the primary's address or key.
"""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    cache: bool = False

    @property
    def provider(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    signature: Signature
    module: str = "predict"  # predict | chain_of_thought
    adapter: str = "chat"  # chat | json
    state: Path | None = None
    json_fallback: bool = False  # ChatAdapter's hidden re-ask with JSONAdapter, off unless asked for

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.signature.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.signature.outputs


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    multiplier: float
    max_s: float
    jitter: float  # a fraction: 0.15 means each wait is drawn from [0.85, 1.15] x nominal


@dataclass(frozen=True, slots=True)
class RetrySpec:
    max_attempts: int
    retry_on: frozenset[str]
    backoff: Backoff
    respect_retry_after: bool
    max_retry_after_s: float


@dataclass(frozen=True, slots=True)
class Timeouts:
    attempt_s: float
    total_s: float | None


@dataclass(frozen=True, slots=True)
class FallbackStep:
    """One step of the ordered chain tried after the primary model has failed.

    Exactly one of ``model`` (run under the same retry policy) or ``output``
    (a canned answer, field name to template text) is set.
    """

    index: int
    on: frozenset[str]
    match: Any = None  # an RE2 pattern (runner.regexsafe): linear time on any input
    model: ModelSpec | None = None
    output: Mapping[str, str] | None = None

    @property
    def label(self) -> str:
        return f"fallback[{self.index}]"


@dataclass(frozen=True, slots=True)
class LoggingSpec:
    level: str = "INFO"
    format: str = "text"  # text | json


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_chars: int = 100000
    requests_per_second: float | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: Path | None
    model: ModelSpec
    program: ProgramSpec
    retry: RetrySpec
    timeouts: Timeouts
    fallbacks: tuple[FallbackStep, ...]
    logging: LoggingSpec
    limits: Limits
    version: int = 1
    rehearsal: Any = None  # runner.rehearsal.scenarios.RehearsalSpec for policies that use the embedded provider

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The primary model, then every fallback model, in chain order."""
        return (self.model, *(s.model for s in self.fallbacks if s.model is not None))

    def executor(self, **kwargs: Any):
        """Build the executor that runs predictions under this policy (imports DSPy)."""
        from .executor import Executor

        return Executor(self, **kwargs)


def _merged(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in (given or {}).items():
        out[key] = _merged(defaults[key], value) if isinstance(defaults.get(key), dict) and isinstance(value, dict) else value
    return out


def _whole(value: int | float | None) -> int | None:
    """A count as an int: JSON Schema's "integer" also admits 3.0, which range() and Semaphore() refuse."""
    return None if value is None else int(value)


def _model(data: Mapping[str, Any], inherit: ModelSpec | None = None) -> ModelSpec:
    merged = _merged(DEFAULTS["model"], data)
    merged["max_tokens"] = _whole(merged["max_tokens"])
    if inherit is not None:
        for key in _INHERITED_MODEL_KEYS:
            if key not in data:
                merged[key] = getattr(inherit, key)
    return ModelSpec(**merged)


def _fallback(index: int, data: Mapping[str, Any], primary: ModelSpec, first_output: str) -> FallbackStep:
    output = data.get("output")
    if "response" in data:
        output = {first_output: data["response"]}
    return FallbackStep(
        index=index,
        on=expand(data.get("on", ["any"])),
        match=compile_match(data["match"]) if data.get("match") is not None else None,
        model=_model(data["model"], inherit=primary) if "model" in data else None,
        output=MappingProxyType(dict(output)) if output is not None else None,
    )


def compile_policy(data: Mapping[str, Any], source: Path | None = None) -> Policy:
    """Turn a validated policy dict into a :class:`Policy`; the dict must have passed the loader's checks."""
    ms = 1 / 1000
    program = _merged(DEFAULTS["program"], data.get("program"))
    retry = _merged(DEFAULTS["retry"], data.get("retry"))
    timeouts = _merged(DEFAULTS["timeouts"], data.get("timeouts"))
    signature = parse_signature(program["signature"])
    state = program["state"]
    if state is not None and source is not None:
        state = (source.parent / state).resolve()
    primary = _model(data["model"])
    backoff = retry["backoff"]
    return Policy(
        name=data.get("name") or (source.stem if source is not None else "policy"),
        source=source,
        version=data.get("version", 1),
        model=primary,
        program=ProgramSpec(
            signature=signature,
            module=program["module"],
            adapter=program["adapter"],
            state=Path(state) if state is not None else None,
            json_fallback=program["json_fallback"],
        ),
        retry=RetrySpec(
            max_attempts=_whole(retry["max_attempts"]),
            retry_on=expand(retry["retry_on"]),
            backoff=Backoff(
                base_s=backoff["base_ms"] * ms,
                multiplier=float(backoff["multiplier"]),
                max_s=backoff["max_ms"] * ms,
                jitter=float(backoff["jitter"]),
            ),
            respect_retry_after=retry["respect_retry_after"],
            max_retry_after_s=retry["max_retry_after_ms"] * ms,
        ),
        timeouts=Timeouts(
            attempt_s=timeouts["attempt_ms"] * ms,
            total_s=timeouts["total_ms"] * ms if timeouts["total_ms"] is not None else None,
        ),
        fallbacks=tuple(
            _fallback(i, step, primary, signature.outputs[0]) for i, step in enumerate(data.get("fallbacks") or ())
        ),
        logging=LoggingSpec(**_merged(DEFAULTS["logging"], data.get("logging"))),
        limits=_limits(_merged(DEFAULTS["limits"], data.get("limits"))),
        rehearsal=_rehearsal(data.get("rehearsal"), source),
    )


def _limits(limits: dict[str, Any]) -> Limits:
    return Limits(
        max_input_chars=_whole(limits["max_input_chars"]),
        requests_per_second=limits["requests_per_second"],
        max_in_flight=_whole(limits["max_in_flight"]),
    )


def _rehearsal(data: Mapping[str, Any] | None, source: Path | None) -> Any:
    if data is None:
        return None
    from .rehearsal.scenarios import compile_rehearsal  # pure parsing; no server, no DSPy

    return compile_rehearsal(data, source.parent if source is not None else None)
