"""``@monitor_memory``, ``@log_performance`` and ``@monitor_resources``.

All three wrap a function in a tracker through one code path (:func:`instrument`), for plain,
``async def``, generator and async generator functions. The wrapper keeps the function's
name, docstring and ``inspect.signature`` (FastAPI and Flask read the parameters from it).
"""

from __future__ import annotations

import functools
import inspect
import reprlib
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union, overload

from .engine.heap import check_top_allocations
from .formatting import log_safe
from .logs.lines import safe_name
from .parameters import check_flag, check_level, check_min_duration
from .trackers import MemoryTracker, PerformanceTimer, ResourceTracker, Tracker

F = TypeVar("F", bound=Callable[..., Any])
TrackerFactory = Callable[[Tuple[Any, ...], Dict[str, Any]], Tracker]


def qualified_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, the name its log lines carry."""
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return safe_name(f"{module}.{qualname}")


def instrument(func: F, make_tracker: TrackerFactory) -> F:
    """Wrap ``func`` so each call (or each generator's run from first step to its end)
    happens inside ``make_tracker(args, kwargs)``."""
    # Over 50 lines on purpose: one wrapper per kind of function, side by side, so the four
    # stay alike; each is a closure over func and make_tracker (no helper call per call).
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            agen = func(*args, **kwargs)
            with make_tracker(args, kwargs):
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    return
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as thrown:  # noqa: BLE001 - forwarded, not handled
                        step = agen.athrow(thrown)
                    else:
                        step = agen.asend(sent)
                    try:
                        value = await step
                    except StopAsyncIteration:
                        return

        return agen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_tracker(args, kwargs):
                return await func(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_tracker(args, kwargs):
                return (yield from func(*args, **kwargs))

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with make_tracker(args, kwargs):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _apply(func: Optional[Callable[..., Any]], decorate: Callable[[F], F]) -> Any:
    """Support both ``@deco`` and ``@deco(...)``; refuse what cannot be wrapped."""
    def checked(target: Any) -> Any:
        if not callable(target):
            raise TypeError(f"can only decorate a callable, got {type(target).__name__}")
        return decorate(target)

    return checked if func is None else checked(func)


def _common(min_duration: float, log_level: Union[str, int]) -> Dict[str, Any]:
    return {"min_duration": check_min_duration(min_duration), "level": check_level(log_level)}


@overload
def monitor_memory(func: F) -> F: ...
@overload
def monitor_memory(
    func: None = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    trace_malloc: bool = True,
    top_allocations: int = 0,
) -> Callable[[F], F]: ...
def monitor_memory(
    func: Optional[F] = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    trace_malloc: bool = True,
    top_allocations: int = 0,
) -> Any:
    """Log a MEMORY line for each call of the decorated function (see :class:`MemoryTracker`;
    ``top_allocations=N`` adds the N lines whose retained size grew most during the call)."""
    settings = _common(min_duration, log_level)
    settings["trace_malloc"] = check_flag("trace_malloc", trace_malloc)
    settings["top_allocations"] = check_top_allocations(top_allocations, trace_malloc)

    def decorate(f: F) -> F:
        template = MemoryTracker._template(qualified_name(f), settings)
        return instrument(f, lambda args, kwargs: MemoryTracker._from(template))

    return _apply(func, decorate)


_args_repr = reprlib.Repr()
_args_repr.maxstring = 40
_args_repr.maxother = 40
_args_repr.maxlevel = 2


def _format_args(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    parts = [_args_repr.repr(a) for a in args]
    parts += [f"{k}={_args_repr.repr(v)}" for k, v in kwargs.items()]
    return log_safe(", ".join(parts), limit=200)


@overload
def log_performance(func: F) -> F: ...
@overload
def log_performance(
    func: None = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    include_args: bool = False,
) -> Callable[[F], F]: ...
def log_performance(
    func: Optional[F] = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    include_args: bool = False,
) -> Any:
    """Log a PERFORMANCE line with each call's duration (see :class:`PerformanceTimer`).

    ``include_args=True`` adds the arguments, each shortened by ``reprlib`` to 40 characters
    and the whole to 200, so large or personal values are never logged in full.
    """
    settings = _common(min_duration, log_level)
    with_args = check_flag("include_args", include_args)

    def decorate(f: F) -> F:
        template = PerformanceTimer._template(qualified_name(f), settings)

        def make(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tracker:
            timer = PerformanceTimer._from(template)
            if with_args:
                timer.attributes = {"args": _format_args(args, kwargs)}
            return timer

        return instrument(f, make)

    return _apply(func, decorate)


@overload
def monitor_resources(func: F) -> F: ...
@overload
def monitor_resources(
    func: None = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    include_io: bool = True,
    include_network: bool = False,
) -> Callable[[F], F]: ...
def monitor_resources(
    func: Optional[F] = None,
    *,
    min_duration: float = 0.0,
    log_level: Union[str, int] = "INFO",
    include_io: bool = True,
    include_network: bool = False,
) -> Any:
    """Log a RESOURCES line for each call (see :class:`ResourceTracker`)."""
    settings = _common(min_duration, log_level)
    settings["include_io"] = check_flag("include_io", include_io)
    settings["include_network"] = check_flag("include_network", include_network)

    def decorate(f: F) -> F:
        template = ResourceTracker._template(qualified_name(f), settings)
        return instrument(f, lambda args, kwargs: ResourceTracker._from(template))

    return _apply(func, decorate)
