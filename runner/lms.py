"""Build DSPy's objects once per policy: the program, the adapter, one pair of LMs per model.

Everything here is decided before the first input is sent, so a policy that
cannot run fails with exit 2 and no network call:

* the model string must be served by some DSPy engine. DSPy itself only finds
  out at call time, after a five-second import of its LiteLLM fallback; here
  DSPy's own offline backend selection (``select_backend``, lm15's router)
  answers, and for strings lm15 cannot route, LiteLLM's provider list and model
  map are read as data files, without importing LiteLLM;
* the API key comes only from the environment variable the policy names;
  a model that needs a key and has none is a ``config`` error naming the
  variable. A local ``api_base`` (our rehearsal server, Ollama, vLLM) gets a
  placeholder key;
* ``num_retries=0`` (the policy is the only retry loop), ``cache`` from the
  policy (off by default), no client setting that would push DSPy onto its
  4x slower LiteLLM engine. A model only LiteLLM serves imports LiteLLM here,
  at build time, so that the import does not eat its first attempt's deadline.

Each model gets two LMs. ``async_lm`` is a plain native ``dspy.LM``: the async
path cancels it with ``asyncio.timeout``, which closes its socket. ``sync_lm``
is the same model on DSPy's native lm15 engine built here with a
:class:`~runner.deadline.DeadlineTransport`, so that the sync path can hold a
hard deadline without asyncio (see :mod:`runner.deadline`). It exists only when
DSPy itself would route the model natively with lm15's default request reading
(no provider ``compat`` preset); otherwise ``sync_lm`` is None and the sync
path runs the async attempt on a private event loop.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")  # no model-metadata fetch: before dspy/litellm load

from .errors import ErrorContext, RunnerError  # noqa: E402
from .policy import ModelSpec, Policy  # noqa: E402
from .redact import register_values  # noqa: E402

try:
    import dspy
    from dspy.clients.backend_selection import select_backend
    from dspy.clients.engines.lm15_engine import LM15Engine
    from dspy.lm15 import RouterConfig, registered_providers

    from .deadline import DeadlineTransport
except Exception as exc:  # a missing or half-installed DSPy: one line, not a traceback
    raise RunnerError(
        "dependency",
        f"cannot import DSPy ({type(exc).__name__}: {exc})",
        context=ErrorContext(operation="import"),
    ) from exc

LOCAL_KEY = "dspy-run-local"
"""The placeholder key sent to a local ``api_base``: local servers accept any key, and DSPy requires one."""

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ModelRuntime:
    """One model of the chain, ready to call: its spec, its label and its two LMs."""

    spec: ModelSpec
    label: str  # "primary" or "fallback[i]"
    async_lm: Any
    sync_lm: Any | None

    def close(self) -> None:
        for lm in (self.sync_lm, self.async_lm):
            if lm is not None:
                lm.close()
        if self.sync_lm is not None:
            self.sync_lm.engine.close()


def build_program(policy: Policy) -> Any:
    """The DSPy module the policy names, with its saved state, and no LM of its own."""
    spec = policy.program
    module = dspy.ChainOfThought if spec.module == "chain_of_thought" else dspy.Predict
    program = module(spec.signature.text)
    if spec.state is not None:
        try:
            program.load(str(spec.state))
        except FileNotFoundError as exc:
            raise RunnerError("config", f"program.state file {spec.state} does not exist", context=_ctx()) from exc
        except Exception as exc:  # DSPy raises several kinds for a state that does not fit
            raise RunnerError(
                "config",
                f"program.state {spec.state} cannot be loaded into {spec.module}({spec.signature.text!r}): {exc}",
                context=_ctx(),
            ) from exc
    for predictor in program.predictors():
        predictor.lm = None  # the policy chooses the model, never a saved state
    return program


def build_adapter(policy: Policy) -> Any:
    """ChatAdapter without its hidden JSON re-ask unless the policy asks for it, or JSONAdapter."""
    if policy.program.adapter == "json":
        return dspy.JSONAdapter()
    return dspy.ChatAdapter(use_json_adapter_fallback=policy.program.json_fallback)


Connect = Callable[[ModelSpec], ModelSpec]
"""A connection hook: the spec DSPy is built from (address, key, wire name) for a model of the policy.

Rehearsals use it to send every model to the rehearsal provider; the record
and the logs keep the policy's own model name.
"""


def build_runtimes(policy: Policy, connect: Connect | None = None) -> tuple[ModelRuntime, ...]:
    """One :class:`ModelRuntime` per model of the chain, in chain order (checked, keys resolved)."""
    labels = ["primary", *(step.label for step in policy.fallbacks if step.model is not None)]
    return tuple(
        build_runtime(spec, label, policy.timeouts.attempt_s, connect) for spec, label in zip(policy.models, labels)
    )


def build_runtime(spec: ModelSpec, label: str, attempt_s: float, connect: Connect | None = None) -> ModelRuntime:
    policy_spec, spec = spec, (connect(spec) if connect is not None else spec)
    context = _ctx(model=policy_spec.name)
    key = api_key(spec, context)
    clients = {"api_key": key} if key is not None else {}
    if spec.api_base:
        clients["api_base"] = spec.api_base
    try:
        async_lm = dspy.LM(spec.name, num_retries=0, cache=spec.cache, **_generation(spec), **clients)
        selection = select_backend(async_lm)
    except Exception as exc:  # DSPy validates the model string and settings at construction
        raise RunnerError("config", f"model {spec.name!r} ({label}): {exc}", context=context) from exc
    if not selection.native and not litellm_serves(spec.name):
        raise RunnerError(
            "unknown_model",
            f"no DSPy provider serves model {spec.name!r} ({label}); nothing was sent",
            context=context,
        )
    if not selection.native:
        _load_litellm(spec, context)
    sync_lm = None
    resolution = selection.resolution
    if selection.native and resolution is not None and getattr(resolution, "compat", None) is None:
        sync_lm = _sync_lm(spec, resolution.provider, clients, attempt_s)
    return ModelRuntime(spec=policy_spec, label=label, async_lm=async_lm, sync_lm=sync_lm)


def _load_litellm(spec: ModelSpec, context: ErrorContext) -> None:
    """Import LiteLLM now (seconds), so that the first attempt's deadline is not spent importing it."""
    from dspy.clients._litellm import get_litellm

    try:
        get_litellm(feature="dspy.LM")
    except ImportError as exc:
        raise RunnerError(
            "dependency",
            f"model {spec.name!r} is served only through LiteLLM, which cannot be imported ({exc})",
            context=context,
        ) from exc


def api_key(spec: ModelSpec, context: ErrorContext) -> str | None:
    """The model's key, read only from ``api_key_env``; registered for redaction before use."""
    if spec.api_key_env:
        value = os.environ.get(spec.api_key_env, "")
        if not value.strip():
            raise RunnerError(
                "config",
                f"model {spec.name!r} reads its API key from ${spec.api_key_env}, which is not set",
                context=context,
                fix=f"export {spec.api_key_env}=... before running",
            )
        register_values(value)
        return value
    if is_local(spec.api_base):
        return LOCAL_KEY
    variables = key_variables(spec.name)
    if spec.api_base is None and not variables and _routes_natively(spec.name):
        return None  # a keyless local provider (ollama, vllm) at its default address
    suggestion = variables[0] if variables else "PROVIDER_API_KEY"
    raise RunnerError(
        "config",
        f"model {spec.name!r} needs an API key and the policy names no environment variable for it",
        context=context,
        fix=f"add `api_key_env: {suggestion}` to the model and export that variable",
    )


def is_local(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urlsplit(api_base).hostname or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


def key_variables(model: str) -> tuple[str, ...]:
    """The environment variables lm15 documents for the model's provider (``()`` when keyless or unknown)."""
    from dspy._vendor.lm15.registry import lookup

    try:
        resolution = _router().resolve(model)
    except Exception:
        return ()
    definition = lookup(resolution.provider)
    return tuple(definition.access.env_keys) if definition is not None else ()


def litellm_serves(model: str) -> bool:
    """Whether LiteLLM (DSPy's compatibility engine) could route ``model``, judged from its data files alone.

    Importing LiteLLM costs seconds; its provider list and model map are JSON
    files inside the package, found without importing it.
    """
    prefix, slash, rest = model.partition("/")
    if slash and rest:
        return prefix in _litellm_chat_providers()
    return model in _litellm_model_map()


@lru_cache(maxsize=1)
def _litellm_chat_providers() -> frozenset[str]:
    data = _litellm_json("provider_endpoints_support_backup.json") or {}
    providers = data.get("providers", {})
    return frozenset(
        name for name, info in providers.items() if (info.get("endpoints") or {}).get("chat_completions", True)
    )


@lru_cache(maxsize=1)
def _litellm_model_map() -> frozenset[str]:
    return frozenset(_litellm_json("model_prices_and_context_window_backup.json") or {})


def _litellm_json(name: str) -> Any:
    spec = importlib.util.find_spec("litellm")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _router() -> Any:
    from dspy.lm15 import _definitions

    return LM15Engine(RouterConfig(env={}, providers=_definitions(registered_providers())), model_type="chat")


def _routes_natively(model: str) -> bool:
    try:
        _router().resolve(model)
    except Exception:
        return False
    return True


def _sync_lm(spec: ModelSpec, provider: str, clients: dict[str, str], attempt_s: float) -> Any:
    """The model on DSPy's native lm15 engine, built as DSPy builds it, but over a :class:`DeadlineTransport`."""
    from dspy.lm15 import _definitions

    transport = DeadlineTransport(
        connect_timeout=min(_CONNECT_TIMEOUT_S, attempt_s),
        # Backstops only: the watchdog cuts at the attempt deadline; these bound a watchdog that never ran.
        read_timeout=attempt_s + 1.0,
        write_timeout=attempt_s + 1.0,
        pool_timeout=attempt_s + 1.0,
    )
    config = RouterConfig(
        api_keys={provider: clients["api_key"]} if "api_key" in clients else None,
        base_urls={provider: clients["api_base"]} if "api_base" in clients else None,
        transport=transport,
        providers=_definitions(registered_providers()),
    )
    engine = LM15Engine(config, model_type="chat")
    return dspy.LM(spec.name, num_retries=0, cache=spec.cache, engine=engine, **_generation(spec))


def _generation(spec: ModelSpec) -> dict[str, Any]:
    return {k: v for k, v in (("temperature", spec.temperature), ("max_tokens", spec.max_tokens)) if v is not None}


def _ctx(model: str | None = None) -> ErrorContext:
    return ErrorContext(operation="build", model=model)
