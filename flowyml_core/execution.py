"""How a step runs: the seed executor's semantics, with its defects fixed.

Order for one step: condition → cache lookup → call with retries and
exponential backoff (each attempt bounded by ``timeout``) → materialize outputs
→ route → cache write. Nothing is swallowed: a failed condition, materialize or
route is a failed result with the reason, and is logged.

These functions are public so that any executor (local, in a container, on a
Dask worker) gives users the same behaviour.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Mapping

import attrs

from flowyml_core.capture import capture_output
from flowyml_core.errors import (
    FlowymlError,
    OutputContractError,
    RemoteStepError,
    StepTimeoutError,
    StopExecution,
    UnfingerprintableError,
)
from flowyml_core.fingerprint import combine, fingerprint, warn_once
from flowyml_core.grouping import StepGroup
from flowyml_core.in_place import InPlaceGuard
from flowyml_core.results import ExecutionResult
from flowyml_core.step import Step

logger = logging.getLogger("flowyml.execution")

DEFAULT_OUTPUT_NAME = "output"


@attrs.define
class Run:
    """What observer hooks learn about a run."""

    run_id: str
    pipeline_name: str
    project_name: str = "default"
    stack_name: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict, repr=False)
    #: The results of the steps that have ended so far (the core walk fills it as they end), so that a
    #: run cut short (Ctrl-C) still knows, and records, what it did.
    steps: dict[str, ExecutionResult] = attrs.field(factory=dict, repr=False)


def bind_inputs(
    step: Step,
    available: Mapping[str, Any],
    fingerprints: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Map available assets onto the step's parameters.

    Each declared input goes to the parameter of the same name, else to the
    parameter at the same position; then any parameter named like an available
    asset receives it. Returns the arguments and their known fingerprints.
    """
    params = step.param_names
    kwargs: dict[str, Any] = {}
    fps: dict[str, str] = {}
    known = fingerprints or {}
    for i, asset in enumerate(step.inputs):
        if asset not in available:
            continue
        if asset in params or step.accepts_any_kwargs:
            target = asset
        elif i < len(params) and params[i] not in kwargs:
            target = params[i]
        else:
            continue
        kwargs[target] = available[asset]
        if asset in known:
            fps[target] = known[asset]
    for name in params:
        if name not in kwargs and name in available:
            kwargs[name] = available[name]
            if name in known:
                fps[name] = known[name]
    return kwargs, fps


def step_params(context: Any, step: Step) -> dict[str, Any]:
    """The run parameters handed to a step's executor.

    Those its function takes; for a step with a ``condition``, every run
    parameter, because the condition may test one the step itself does not
    take (``condition=lambda deploy: deploy``). The call and the cache key
    still see only the function's own parameters.
    """
    if step.condition is not None or step.accepts_any_kwargs:
        return context.params
    # Context.inject_params, without its per-call type dispatch: this runs once per step.
    available = context._params
    return {name: available[name] for name in step.param_names if name in available}


def split_outputs(step: Step, value: Any) -> dict[str, Any]:
    """The named assets in a step's return value: exactly the declared outputs.

    No declared output: ``{}``. One: it receives the whole value. Several: the
    items of a tuple/list of the same length, in order, or the values of a
    dict with exactly those keys. Anything else raises
    :class:`OutputContractError`, naming what was declared and what came back:
    ``run_step`` checks this before anything is stored, so for every step that
    succeeded this returns every declared output (remote runners derive each
    asset's fingerprint from that, without the value).
    """
    outputs = step.outputs
    if not outputs:
        return {}
    if len(outputs) == 1:
        return {outputs[0]: value}
    if isinstance(value, (tuple, list)):
        if len(value) == len(outputs):
            return dict(zip(outputs, value))
        received = f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    elif isinstance(value, dict):
        if len(value) == len(outputs) and all(name in value for name in outputs):
            return {name: value[name] for name in outputs}
        missing = [name for name in outputs if name not in value]
        extra = [key for key in value if key not in outputs]
        received = f"a dict with keys {list(value)}" + "".join(
            f" ({label} {', '.join(map(repr, names))})"
            for label, names in (("missing", missing), ("unexpected", extra)) if names
        )
    else:
        received = "None" if value is None else f"a {type(value).__name__}"
    raise OutputContractError(
        f"step {step.name!r} declares {len(outputs)} outputs {list(outputs)} but returned {received}; "
        f"return a tuple or list of {len(outputs)} items in that order, or a dict with exactly those keys"
    )


def result_assets(step: Step, result: ExecutionResult) -> dict[str, Any]:
    """The assets a finished step hands downstream: none unless it succeeded and ran.

    ``run_step`` has checked the contract already; an executor that does not use
    it may return a success whose value breaks it, and then that step fails here,
    as itself, rather than the run raising or a consumer missing an input.
    """
    if not result.success or result.skipped:
        return {}
    try:
        return split_outputs(step, result.output)
    except OutputContractError as exc:
        result.success = False
        result.error = str(exc)
        result.output_fingerprint = None
        logger.error("step %s failed: %s", step.name, exc, extra=_FAILURE_EXTRA)
        return {}


def asset_fingerprints(step: Step, output_fingerprint: str | None, assets: Mapping[str, Any]) -> dict[str, str]:
    """Fingerprints of each asset, derived from the output's (no re-hashing)."""
    if output_fingerprint is None:
        return {}
    if len(assets) == 1 and len(step.outputs) == 1:
        return {name: output_fingerprint for name in assets}
    return {name: combine(output_fingerprint, name) for name in assets}


def _condition_kwargs(
    condition: Callable[..., Any],
    context_params: Mapping[str, Any],
    inputs: Mapping[str, Any],
    all_outputs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from flowyml_core.step import signature_names

    names, takes_all = signature_names(condition)
    pool: dict[str, Any] = dict(context_params)
    if all_outputs:
        pool.update(all_outputs)
        for value in all_outputs.values():
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(k, str):
                        pool.setdefault(k, v)
    pool.update(inputs)
    return pool if takes_all else {k: v for k, v in pool.items() if k in names}


def _call_with_timeout(step: Step, kwargs: dict[str, Any]) -> Any:
    """Call the step; past ``timeout`` seconds raise StepTimeoutError.

    Python cannot kill a thread: a timed-out call keeps running in a daemon
    thread and its result is discarded. Steps that must stop for real belong in
    a subprocess-based executor.
    """
    if step.timeout is None:
        return step.func(**kwargs)
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = ctx.run(step.func, **kwargs)
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"flowyml-step-{step.name}", daemon=True)
    worker.start()
    worker.join(step.timeout)
    if worker.is_alive():
        raise StepTimeoutError(f"step {step.name!r} timed out after {step.timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


#: Marks log records of step failures, which are also in the result (a CLI
#: that shows results may filter them to avoid saying it twice).
_FAILURE_EXTRA = {"flowyml_step_failure": True}


def describe_error(exc: BaseException, hide: Iterable[str] = ()) -> str:
    """``repr(exc)`` and its traceback, without this module's frames.

    The user's frames are what explain a failure; the executor's own
    (run_step, the timeout thread) are the same for every step and only push
    them off the screen. An error raised by the executor itself (a timeout)
    keeps no traceback at all. ``hide`` names more files whose frames are an
    executor's own (the loop of a worker process that calls step functions).
    A :class:`RemoteStepError` is the description made where the step ran.
    """
    if isinstance(exc, RemoteStepError):
        return exc.description
    hidden = {_THIS_FILE, *hide}
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename not in hidden])
    return f"{exc!r}\n" + "".join(te.format())


_THIS_FILE = describe_error.__code__.co_filename  # what tracebacks call this module


def _store_error(exc: BaseException) -> str:
    """A store's error in one line: flowyml's own errors are sentences for people, shown as
    ``Type: message``; others as their repr (``OSError(28, 'No space left on device')``)."""
    if isinstance(exc, FlowymlError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)


def _failure(step: Step, start: float, message: str, retries: int = 0, logs: str | None = None) -> ExecutionResult:
    logger.error(
        "step %s failed: %s", step.name, message.splitlines()[0] if message else message, extra=_FAILURE_EXTRA
    )
    return ExecutionResult(
        step_name=step.name,
        success=False,
        error=message,
        duration_seconds=time.perf_counter() - start,
        retries=retries,
        logs=logs,
    )


def run_step(
    step: Step,
    inputs: Mapping[str, Any],
    context_params: Mapping[str, Any],
    cache_store: Any | None = None,
    artifact_store: Any | None = None,
    run_id: str | None = None,
    project_name: str = "default",
    all_outputs: Mapping[str, Any] | None = None,
    router: Any | None = None,
    input_fingerprints: Mapping[str, str] | None = None,
    call: Callable[[Step, dict[str, Any]], Any] | None = None,
) -> ExecutionResult:
    """Run one step with the full semantics; never raises for a step's failure.

    ``call(step, kwargs)`` makes one attempt in place of calling ``step.func``
    here: an executor that runs step functions elsewhere (another process)
    passes it. It returns the value or raises, bounds the attempt by
    ``step.timeout`` itself, and raises a :class:`RemoteStepError` for an
    exception that happened elsewhere, so that the result reads the same.
    """
    start = time.perf_counter()
    if call is None and step.timeout is not None:
        call = _call_with_timeout

    if step.condition is not None:
        try:
            should_run = step.condition(**_condition_kwargs(step.condition, context_params, inputs, all_outputs))
        except Exception as exc:
            return _failure(step, start, f"condition check failed: {describe_error(exc)}")
        if not should_run:
            return ExecutionResult(
                step_name=step.name, success=True, skipped=True, duration_seconds=time.perf_counter() - start
            )

    use_cache = cache_store is not None and step.cache
    cache_key = None
    if use_cache:
        try:
            cache_key = step.get_cache_key(inputs, context_params, input_fingerprints)
        except UnfingerprintableError as exc:
            _uncacheable(step, exc)
            use_cache = False
    if use_cache:
        entry = cache_store.get(cache_key)
        if entry is not None and (len(step.outputs) < 2 or _meets_contract(step, entry.value)):
            return ExecutionResult(
                step_name=step.name,
                success=True,
                output=entry.value,
                duration_seconds=time.perf_counter() - start,
                cached=True,
                output_fingerprint=entry.fingerprint,
                cache_key=cache_key,
            )

    kwargs = {**inputs, **context_params}
    if not step.accepts_any_kwargs:
        kwargs = {k: kwargs[k] for k in step.param_names if k in kwargs}
    attempt = 0
    logs: str | None = None
    while True:
        try:
            if run_id is not None:
                with capture_output() as buffer:
                    try:
                        value = step.func(**kwargs) if call is None else call(step, kwargs)
                    finally:
                        # Keep every attempt's output: a flaky step's earlier tries explain it.
                        logs = ((logs or "") + buffer.getvalue()) or None
            else:
                value = step.func(**kwargs) if call is None else call(step, kwargs)
            break
        except StopExecution as exc:
            return _failure(step, start, f"execution stopped: {exc}", retries=attempt, logs=logs)
        except Exception as exc:
            if attempt < step.retry:
                delay = step.retry_delay * (2**attempt)
                logger.warning(
                    "step %s attempt %d/%d failed (%r); retrying in %.3gs",
                    step.name, attempt + 1, step.retry + 1, exc, delay,
                )
                attempt += 1
                if logs is not None:
                    logs += f"[flowyml] attempt {attempt} failed: {exc!r}; retrying\n"
                if delay:
                    time.sleep(delay)
                continue
            return _failure(step, start, describe_error(exc), retries=attempt, logs=logs)

    # The contract is checked before anything is fingerprinted, stored or cached: a
    # mismatch fails this step, not the consumer that would miss an asset.
    try:
        assets = split_outputs(step, value)
    except OutputContractError as exc:
        return _failure(step, start, str(exc), retries=attempt, logs=logs)

    output_fp = None
    if use_cache:
        try:
            output_fp = fingerprint(value)
        except UnfingerprintableError as exc:
            _uncacheable(step, UnfingerprintableError(exc.type_name, exc.reason, where=f"step {step.name!r}: its output"))
            use_cache = False
    result = ExecutionResult(
        step_name=step.name, success=True, output=value, retries=attempt, output_fingerprint=output_fp, logs=logs,
        cache_key=cache_key,
    )

    if (artifact_store is not None or router is not None) and run_id is not None and value is not None:
        problem = _store_outputs(step, assets or {DEFAULT_OUTPUT_NAME: value}, result, artifact_store, router,
                                 run_id, project_name)
        if problem is not None:
            result.success = False
            result.error = problem
            logger.error("step %s: %s", step.name, problem.splitlines()[0], extra=_FAILURE_EXTRA)
            result.duration_seconds = time.perf_counter() - start
            return result

    if use_cache:
        try:
            cache_store.set_value(cache_key, value, step.name, step.get_code_hash(), fingerprint=output_fp)
        except Exception as exc:
            # The step succeeded; a cache that cannot be written only costs a rerun.
            logger.warning("step %s: could not write cache entry: %r", step.name, exc)
    result.duration_seconds = time.perf_counter() - start
    return result


def _uncacheable(step: Step, exc: UnfingerprintableError) -> None:
    warn_once(
        (step.name, exc.where, exc.type_name),
        "%s; step %r runs without the cache (results that cannot be fingerprinted cannot be looked up)",
        exc, step.name,
    )


def _meets_contract(step: Step, value: Any) -> bool:
    """Whether a cached value splits into the declared outputs (an entry from before the
    contract was checked is a miss, not a run that fails later downstream)."""
    try:
        split_outputs(step, value)
    except OutputContractError as exc:
        logger.warning("step %s: ignoring a cache entry that does not match its outputs: %s", step.name, exc)
        return False
    return True


def _store_outputs(
    step: Step,
    assets: Mapping[str, Any],
    result: ExecutionResult,
    artifact_store: Any | None,
    router: Any | None,
    run_id: str,
    project_name: str,
) -> str | None:
    """Materialize each output asset (the whole value as ``output`` when none is declared), routing first.

    Returns an error message, or None when everything was stored.
    """
    return_type = step.func.__annotations__.get("return") if hasattr(step.func, "__annotations__") else None
    for name, obj in assets.items():
        if obj is None:
            continue
        uri = None
        stage = "routing"
        try:
            if router is not None:
                uri = router.route(
                    obj, name=name, step_name=step.name, run_id=run_id,
                    project_name=project_name, return_type=return_type,
                )
            if uri is None and artifact_store is not None:
                stage = "materializing"
                uri = artifact_store.materialize(
                    obj=obj, name=name, run_id=run_id, step_name=step.name, project_name=project_name
                )
        except Exception as exc:
            # A store's failure is not the user's code: its frames (flowyml, fsspec,
            # gcsfs) go to the debug log (``--debug``), the result says what failed.
            logger.debug("step %s: %s output %r failed", step.name, stage, name, exc_info=True)
            return f"{stage} output {name!r} failed: {_store_error(exc)}"
        if uri is not None:
            result.artifact_uris[name] = uri
            if result.artifact_uri is None:
                result.artifact_uri = uri
    return None


def run_step_group(
    execute_step: Callable[..., ExecutionResult],
    step_group: StepGroup,
    inputs: Mapping[str, Any],
    context: Any | None = None,
    context_params: Mapping[str, Any] | None = None,
    fingerprints: Mapping[str, str] | None = None,
    **step_kwargs: Any,
) -> list[ExecutionResult]:
    """Run a group's steps in order in this process, with the seed's mapping rules.

    ``execute_step`` is the executor's own method (wrapped by
    :func:`flowyml_core.components.keyword_caller` so that arguments it does not
    accept are dropped), so a third-party executor that implements only
    ``execute_step`` gets group semantics for free. ``step_kwargs`` are passed
    through to it (stores, run id, …).
    """
    available = dict(inputs)
    known_fps = dict(fingerprints or {})
    results: list[ExecutionResult] = []
    by_name = {s.name: s for s in step_group.steps}
    order = list(step_group.execution_order)
    blocked: dict[str, str] = {}  # asset -> why it will not exist (as the walker does between units)
    guard = InPlaceGuard(s.inputs for s in step_group.steps)  # a member that changes what others read
    for index, name in enumerate(order):
        step = by_name[name]
        why = next((blocked[a] for a in step.inputs if a in blocked), None)
        if why is not None:
            results.append(ExecutionResult(step_name=name, success=True, skipped=True, error=why))
            for asset in step.outputs:
                blocked.setdefault(asset, why)
            continue
        kwargs, fps = bind_inputs(step, available, known_fps)
        if context is not None:
            params = step_params(context, step)
        else:
            params = dict(context_params or {})
        call_kwargs = dict(step_kwargs, input_fingerprints=fps)
        if step.condition is not None:
            call_kwargs["all_outputs"] = available
        shared = guard.shared(a for a in step.inputs if a in known_fps)
        for asset in shared:
            guard.watch(asset, available[asset])  # from outside the group: not seen yet
        result = execute_step(step=step, inputs=kwargs, context_params=params, **call_kwargs)
        results.append(result)
        if shared:
            changed, _ = guard.read(f"step {name}", shared, available, not result.cached and not result.skipped)
            known_fps.update(changed)
        assets = result_assets(step, result)
        if not result.success:
            for remaining in order[index + 1:]:
                results.append(
                    ExecutionResult(
                        step_name=remaining,
                        success=True,
                        skipped=True,
                        error=f"skipped: step {name!r} failed earlier in group {step_group.group_name!r}",
                    )
                )
            break
        if result.skipped:
            for asset in step.outputs:
                blocked.setdefault(asset, f"skipped: upstream step {name!r} was skipped")
            continue
        # A None output is an asset like any other (as between units).
        available.update(assets)
        known_fps.update(asset_fingerprints(step, result.output_fingerprint, assets))
        guard.produced(step, result, assets)
    return results
