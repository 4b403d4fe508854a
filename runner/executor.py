"""Run DSPy predictions under a policy: input check, attempts, waits, fallbacks, deadline.

One input goes through, in this order:

1. the input check: every field of the signature present and non-empty, no
   unknown field, none longer than ``limits.max_input_chars``. A refused input
   is never sent and never triggers a fallback;
2. the primary model: up to ``max_attempts`` attempts, each under a hard
   deadline of ``attempt_ms``; between attempts the policy's jittered backoff,
   or the provider's Retry-After when it asks for longer (never earlier); a
   class not in ``retry_on``, a Retry-After above ``max_retry_after_ms`` or a
   wait that would pass ``total_ms`` ends the model at once;
3. the fallbacks in order, each applying when its ``on`` names the last error's
   class (and its ``match``, if any, finds the input): a model step runs under
   the same retry policy, a response step answers at once;
4. if nothing answered, the last error (``retry_exhausted`` when the last model
   used up its attempts on a retryable class) with every attempt in the record.

``total_ms`` bounds all of it, waits included. The retry loop is stamina's: its
backoff hook (:class:`_Decider`) returns either the wait the policy computes or
``False`` to stop this model at once, which is all the policy language needs.

The sync path (:meth:`Executor.run`) never touches asyncio for natively routed
models: the call runs in the calling thread and :mod:`runner.deadline` cuts its
socket at the deadline. The async path wraps ``acall`` in ``asyncio.timeout``,
whose cancellation closes the request.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import string
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import stamina
from loguru import logger

from .errors import ERROR_CLASSES, ErrorContext, RunnerError
from .limits import Limiter
from .plan import draw_wait_s
from .policy import FallbackStep, ModelSpec, Policy
from .redact import redact, register_env
from .result import ERROR, FALLBACK, OK, Attempt, ErrorInfo, Result

OPERATION = "predict"

_NO_HISTORY = {"disable_history": True, "max_trace_size": 0}
"""DSPy keeps every prompt and answer (up to 10,000 per LM, per module and globally) unless told not to:
in a long-lived executor that is memory growing with traffic and inputs kept in memory; nothing here reads it."""


@dataclass(slots=True)
class _Run:
    """The mutable state of one input's trip through the chain (never leaves this module)."""

    record_id: str
    inputs: dict[str, Any]
    started: float
    total_s: float | None
    attempts: list[Attempt] = field(default_factory=list)
    error: RunnerError | None = None
    exhausted: int = 0  # attempts the last model used up on a retryable class (0: it stopped for another reason)

    def remaining_s(self) -> float:
        if self.total_s is None:
            return float("inf")
        return self.total_s - (time.perf_counter() - self.started)

    def record(self, model: str, attempt: int, outcome: str, started: float) -> None:
        self.attempts.append(Attempt(model, attempt, outcome, (time.perf_counter() - started) * 1000, 0.0))

    def set_last_wait(self, wait_s: float) -> None:
        self.attempts[-1] = replace(self.attempts[-1], wait_ms=wait_s * 1000)


class _NoSlot(RunnerError):
    """A ``timeout`` that sent nothing: the attempt could not get a request slot (``limits``) before total_ms ran out.

    Retrying it could only queue again for the same slots, so it ends the model at once.
    """


class _Decider:
    """stamina's backoff hook for one model: the wait before the next attempt, or False to stop now."""

    __slots__ = ("executor", "run", "model", "attempt")

    def __init__(self, executor: Executor, run: _Run, model: str) -> None:
        self.executor = executor
        self.run = run
        self.model = model
        self.attempt = 0  # the attempt in progress, set by the executor before each call

    def __call__(self, exc: Exception) -> bool | float:
        if not isinstance(exc, RunnerError):
            return False  # not ours to retry: a bug, surfaced as it is
        wait, reason = self.executor._next_wait(exc, self.attempt, self.run)
        policy = self.executor.policy
        context = f"[operation={OPERATION} model={self.model} attempt={self.attempt}]"
        head = f"Attempt {self.attempt}/{policy.retry.max_attempts} failed: {exc.code}"
        bound = logger.bind(operation=OPERATION, model=self.model, attempt=self.attempt, code=exc.code, detail=exc.detail)
        if wait is None:
            used_up = reason == "no attempts left" and exc.code in policy.retry.retry_on and self.attempt > 1
            self.run.exhausted = self.attempt if used_up else 0
            bound.warning(f"{head}, giving up on this model: {reason} {context}")
            return False
        self.run.set_last_wait(wait)
        bound.warning(f"{head}, retrying in {wait:.2f} s {context}")
        return wait


class Executor:
    """Runs predictions under one :class:`~runner.policy.Policy`; build it once and reuse it.

    Building imports DSPy and checks every model of the chain offline (an
    unknown model or a missing key raises :class:`RunnerError` here, before any
    input is sent). ``run`` and ``arun`` return a :class:`~runner.result.Result`
    and do not raise for provider failures or bad inputs: those are records.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        rng: random.Random | None = None,
        limiter: Limiter | None = None,
        connect: Callable[[ModelSpec], ModelSpec] | None = None,
    ) -> None:
        from . import lms  # imports DSPy (about a second): only when an executor is built

        import dspy

        from .deadline import attempt_deadline

        self._dspy_context = dspy.context
        self._attempt_deadline = attempt_deadline
        self.policy = policy
        # The policy's key variables are secrets even when a connection hook (a rehearsal) never sends them:
        # a provider message or a script may still carry their values into a record.
        register_env(*(model.api_key_env for model in policy.models))
        # Every attempt, retries included, passes the client-side limits: a retry is a billable request too.
        self._limiter = limiter if limiter is not None else Limiter.for_share(policy.limits)
        self._rng = rng or random.Random()
        self._ids = itertools.count(1)
        self._program = lms.build_program(policy)
        self._adapter = lms.build_adapter(policy)
        runtimes = lms.build_runtimes(policy, connect)
        self._primary = runtimes[0]
        model_steps = [step for step in policy.fallbacks if step.model is not None]
        self._step_runtime = {step.index: rt for step, rt in zip(model_steps, runtimes[1:])}
        self._runtimes = runtimes

    # ----------------------------------------------------------------- public API

    def run(self, mapping: Mapping[str, Any] | None = None, /, *, record_id: str | None = None, **fields: Any) -> Result:
        """Predict for one input, synchronously: ``run(question=...)`` or ``run({"question": ...}, record_id="7")``."""
        run = self._start(mapping, fields, record_id)
        if run.error is not None:
            return self._finish(run, None, None)
        for item in self._chain(run):
            if isinstance(item, FallbackStep):
                return self._finish(run, item, self._canned(item, run.inputs))
            output = self._run_model_sync(item, run)
            if output is not None:
                return self._finish(run, item, output)
        return self._finish(run, None, None)

    async def arun(self, mapping: Mapping[str, Any] | None = None, /, *, record_id: str | None = None, **fields: Any) -> Result:
        """Predict for one input on the running event loop; same arguments and record as :meth:`run`."""
        run = self._start(mapping, fields, record_id)
        if run.error is not None:
            return self._finish(run, None, None)
        for item in self._chain(run):
            if isinstance(item, FallbackStep):
                return self._finish(run, item, self._canned(item, run.inputs))
            output = await self._run_model_async(item, run)
            if output is not None:
                return self._finish(run, item, output)
        return self._finish(run, None, None)

    def close(self) -> None:
        """Close the connection pools of every model (also done by ``with executor:``)."""
        for runtime in self._runtimes:
            runtime.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ input and chain

    def _start(self, mapping: Mapping[str, Any] | None, fields: dict[str, Any], record_id: str | None) -> _Run:
        inputs = {**mapping, **fields} if mapping is not None else fields
        rid = record_id if record_id is not None else str(next(self._ids))
        run = _Run(rid, inputs, time.perf_counter(), self.policy.timeouts.total_s)
        problem = self._check_input(inputs)
        if problem is not None:
            run.error = problem
            logger.bind(operation="input", id=rid, code=problem.code).warning(f"Input {rid} refused: {problem.message}")
        return run

    def _check_input(self, inputs: Mapping[str, Any]) -> RunnerError | None:
        expected = self.policy.program.inputs
        limit = self.policy.limits.max_input_chars
        unknown = [name for name in inputs if name not in expected]
        if unknown:
            return _refused("invalid_input", f"unknown input field {unknown[0]!r}; the signature takes {', '.join(expected)}")
        for name in expected:
            if name not in inputs:
                return _refused("invalid_input", f"input field {name!r} is missing")
            value = inputs[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                return _refused("empty_input", f"input field {name!r} is empty")
            if isinstance(value, str) and not _sendable(value):
                return _refused(
                    "invalid_input",
                    f"input field {name!r} holds text that is not valid Unicode (an unpaired surrogate, e.g. bytes that were not UTF-8)",
                    fix="pass the text as UTF-8",
                )
            size = len(value) if isinstance(value, str) else len(str(value))
            if size > limit:
                return _refused(
                    "invalid_input",
                    f"input field {name!r} has {size} characters, more than limits.max_input_chars ({limit})",
                    fix="shorten the input or raise limits.max_input_chars",
                )
        return None

    def _chain(self, run: _Run) -> Iterator[Any]:
        """The models and canned answers to try, in order, read lazily against the latest error."""
        yield self._primary
        for step in self.policy.fallbacks:
            if not self._applies(step, run):
                continue
            if step.model is None:
                yield step
            elif run.remaining_s() <= 0:
                logger.bind(operation=OPERATION, id=run.record_id).info(f"Skipping {step.label}: total_ms has passed")
            else:
                yield self._step_runtime[step.index]

    def _applies(self, step: FallbackStep, run: _Run) -> bool:
        if run.error is None or run.error.code not in step.on:
            return False
        if step.match is None:
            return True
        return any(step.match.search(str(value)) for value in run.inputs.values())  # RE2: linear in the input

    def _canned(self, step: FallbackStep, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """A response step's answer: its texts with ``{field}`` filled in; outputs it gives no text for stay None."""
        assert step.output is not None
        answer: dict[str, Any] = dict.fromkeys(self.policy.program.outputs)
        for name, template in step.output.items():
            answer[name] = _render(template, inputs, self.policy.program.inputs)
        return answer

    # The first attempt runs before stamina's loop is built, so that a success (the common case) pays
    # for no retry machinery at all. On a failure the loop starts and replays that first error as its
    # attempt 1: stamina's hook then decides about every attempt alike, and stamina does every wait.

    def _run_model_sync(self, runtime: Any, run: _Run) -> dict[str, Any] | None:
        try:
            return self._attempt_sync(runtime, 1, run)
        except RunnerError as error:
            first = error
        decider = _Decider(self, run, runtime.spec.name)
        try:
            for attempt in stamina.retry_context(on=decider, attempts=self.policy.retry.max_attempts, timeout=None):
                with attempt:
                    decider.attempt = attempt.num
                    if attempt.num == 1:
                        raise first
                    return self._attempt_sync(runtime, attempt.num, run)
        except RunnerError as error:
            run.error = error
        return None

    async def _run_model_async(self, runtime: Any, run: _Run) -> dict[str, Any] | None:
        try:
            return await self._attempt_async(runtime, 1, run)
        except RunnerError as error:
            first = error
        decider = _Decider(self, run, runtime.spec.name)
        try:
            async for attempt in stamina.retry_context(on=decider, attempts=self.policy.retry.max_attempts, timeout=None):
                with attempt:
                    decider.attempt = attempt.num
                    if attempt.num == 1:
                        raise first
                    return await self._attempt_async(runtime, attempt.num, run)
        except RunnerError as error:
            run.error = error
        return None

    def _next_wait(self, error: RunnerError, attempt: int, run: _Run) -> tuple[float | None, str]:
        """The wait after failed ``attempt``, or None and the reason this model stops now."""
        retry = self.policy.retry
        if isinstance(error, _NoSlot):
            return None, "no request slot (limits) within total_ms"
        if error.code not in retry.retry_on:
            return None, f"{error.code} is not in retry_on"
        if attempt >= retry.max_attempts:
            return None, "no attempts left"
        wait = draw_wait_s(retry.backoff, attempt, self._rng)
        if retry.respect_retry_after and error.retry_after_s is not None:
            if error.retry_after_s > retry.max_retry_after_s:
                return None, f"Retry-After {error.retry_after_s:.2f} s exceeds max_retry_after_ms"
            # The provider's word lengthens the wait, never shortens it: a "Retry-After: 0" from an overloaded
            # provider must not turn the policy's backoff into a hammering loop.
            wait = max(wait, error.retry_after_s)
        if wait >= run.remaining_s():
            return None, f"waiting {wait:.2f} s would pass total_ms"
        return wait, ""

    # ------------------------------------------------------------ one attempt

    def _budget_s(self, run: _Run) -> float:
        """This attempt's deadline: ``attempt_ms``, or less when ``total_ms`` has less left."""
        return min(self.policy.timeouts.attempt_s, run.remaining_s())

    def _failed(self, exc: Exception, expired: bool, budget: float, runtime: Any, attempt: int) -> RunnerError:
        context = ErrorContext(operation=OPERATION, attempt=attempt, model=runtime.spec.name)
        return self._timeout(budget, context) if expired else self._classify(exc, context)

    def _attempt_sync(self, runtime: Any, attempt: int, run: _Run) -> dict[str, Any]:
        if runtime.sync_lm is None:
            return _run_coroutine(self._attempt_async(runtime, attempt, run))
        if self._limiter is None:
            return self._call_sync(runtime, attempt, run)
        if not self._limiter.acquire(run.remaining_s()):
            raise self._no_slot(runtime, attempt)
        try:
            return self._call_sync(runtime, attempt, run)
        finally:
            self._limiter.release()

    def _call_sync(self, runtime: Any, attempt: int, run: _Run) -> dict[str, Any]:
        budget = self._budget_s(run)
        started = time.perf_counter()
        guard = self._attempt_deadline(budget)
        try:
            with guard, self._dspy_context(lm=runtime.sync_lm, adapter=self._adapter, **_NO_HISTORY):
                prediction = self._program(**run.inputs)
        except Exception as exc:
            error = self._failed(exc, guard.deadline.expired, budget, runtime, attempt)
            run.record(runtime.spec.name, attempt, error.code, started)
            raise error from exc
        run.record(runtime.spec.name, attempt, OK, started)
        return self._outputs(prediction)

    async def _attempt_async(self, runtime: Any, attempt: int, run: _Run) -> dict[str, Any]:
        if self._limiter is None:
            return await self._call_async(runtime, attempt, run)
        if not await self._limiter.aacquire(run.remaining_s()):
            raise self._no_slot(runtime, attempt)
        try:
            return await self._call_async(runtime, attempt, run)
        finally:
            self._limiter.release()

    def _no_slot(self, runtime: Any, attempt: int) -> RunnerError:
        """total_ms ran out while this attempt queued for the policy's ``limits``: nothing was sent, so no attempt is recorded."""
        context = ErrorContext(operation=OPERATION, attempt=attempt, model=runtime.spec.name)
        return _NoSlot(
            "timeout",
            f"timeout from {context.model}: total_ms ran out while waiting for a request slot (limits); nothing was sent",
            context=context,
        )

    async def _call_async(self, runtime: Any, attempt: int, run: _Run) -> dict[str, Any]:
        budget = self._budget_s(run)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget) as scope:
                with self._dspy_context(lm=runtime.async_lm, adapter=self._adapter, **_NO_HISTORY):
                    prediction = await self._program.acall(**run.inputs)
        except Exception as exc:
            error = self._failed(exc, scope.expired(), budget, runtime, attempt)
            run.record(runtime.spec.name, attempt, error.code, started)
            raise error from exc
        run.record(runtime.spec.name, attempt, OK, started)
        return self._outputs(prediction)

    def _timeout(self, budget: float, context: ErrorContext) -> RunnerError:
        bound = "attempt_ms" if budget >= self.policy.timeouts.attempt_s else "the rest of total_ms"
        return RunnerError("timeout", f"timeout from {context.model}: no complete answer within {budget * 1000:.0f} ms ({bound})", context=context)

    def _classify(self, exc: Exception, context: ErrorContext) -> RunnerError:
        from .classify import classify

        error = classify(exc, context)
        if error.code == "internal":
            logger.bind(operation=context.operation, model=context.model, attempt=context.attempt).error(
                f"Unexpected {type(exc).__name__} from DSPy: {error.detail}\n{redact(''.join(traceback.format_exception(exc)))}"
            )
        return error

    def _outputs(self, prediction: Any) -> dict[str, Any]:
        return {name: _plain(prediction.get(name)) for name in self.policy.program.outputs}

    # ---------------------------------------------------------------- records

    def _finish(self, run: _Run, served: Any, output: Mapping[str, Any] | None) -> Result:
        elapsed = (time.perf_counter() - run.started) * 1000
        attempts = tuple(run.attempts)
        if output is not None:
            if served is self._primary:
                return Result(run.record_id, OK, output, "primary", served.spec.name, attempts, None, elapsed)
            label = served.label
            model = served.spec.name if not isinstance(served, FallbackStep) else None
            cause = run.error.code if run.error is not None else "?"
            logger.bind(operation=OPERATION, id=run.record_id, served_by=label).info(
                f"Input {run.record_id} answered by {label}" + (f" ({model})" if model else " (canned response)") + f" after {cause}"
            )
            return Result(run.record_id, FALLBACK, output, label, model, attempts, None, elapsed)
        error = self._final_error(run)
        if error.context.operation != "input":
            logger.bind(operation=OPERATION, id=run.record_id, code=error.code).error(f"Input {run.record_id} failed: {error.message}")
        return Result(run.record_id, ERROR, None, None, None, attempts, ErrorInfo.from_error(error), elapsed)

    def _final_error(self, run: _Run) -> RunnerError:
        error = run.error or RunnerError("internal", "the chain ended with neither an answer nor an error")
        if run.exhausted and error.code in ERROR_CLASSES:
            return RunnerError(
                "retry_exhausted",
                f"{run.exhausted} attempts on {error.context.model} failed; last error: {error.detail}",
                context=error.context,
            )
        return error


def _render(template: str, inputs: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    """``str.format``'s grammar ({{ and }} are literal braces), but only *parsed*: a placeholder naming an
    input field is replaced by that value as text, and nothing is ever looked up, indexed or called, so an
    input holding ``{0.__class__}`` comes out as those characters."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:  # unbalanced braces: the loader refuses these; a hand-built policy gets its text verbatim
        return template
    out = []
    for literal, name, spec, conversion in parts:
        out.append(literal)
        if name is None:
            continue
        if name in fields and name in inputs and not spec and not conversion:
            out.append(str(inputs[name]))
        else:
            out.append("{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def _sendable(text: str) -> bool:
    """Whether ``text`` can go on the wire as UTF-8: a lone surrogate (undecodable bytes in argv end up as
    these) cannot, and would otherwise fail inside DSPy as an ``internal`` error after the attempt started."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refused(code: str, message: str, fix: str | None = None) -> RunnerError:
    return RunnerError(code, message, context=ErrorContext(operation="input"), fix=fix)


def _plain(value: Any) -> Any:
    """An output value as JSON-ready data (DSPy may hand back pydantic models for typed fields)."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def _run_coroutine(coro: Any) -> Any:
    """Run an async attempt from sync code: on a fresh loop, in a helper thread if one is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="dspy-run-attempt")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
