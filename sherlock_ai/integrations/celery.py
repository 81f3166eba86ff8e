"""Celery: the request id travels with the tasks a request sends, and each task run is measured
like a request (one ``MEMORY | TASK {name} | ...`` line), through Celery's signals.

    from celery import Celery
    from sherlock_ai.integrations.celery import instrument_celery

    app = Celery("shop", broker="redis://localhost:6379/0")
    instrument_celery(app, leak_detection=True)

- Publishing (``before_task_publish``): while a request id is set, the message's headers carry
  it (``sherlock_ai_request_id``; a header the caller set is kept).
- Running (``task_prerun`` / ``task_postrun``, see :class:`TaskRun`): the id in the message,
  else a fresh id per run, is set for the run; the run is measured from ``task_prerun`` to
  ``task_postrun`` and ends as SUCCESS, ERROR (with the exception) or RETRY.
- Each worker process builds its own measurement state (leak watch, memory guard, tracing
  lease) in ``worker_process_init`` (prefork children) or at its first task: nothing made
  before Celery forks its children runs in them.
- The worker's logging set-up (``worker_hijack_root_logger``) empties the root logger's
  handlers; ``after_setup_logger`` puts the log files of sherlock_ai's set-up back.

Celery is imported only by this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from dataclasses import dataclass
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, TypedDict, Union

from celery import signals

from ..bounded import BoundedCache
from ..consumers import registry
from ..deaths import recorder
from ..engine.measurement import RETRY
from ..engine.requests import OpenRequest, RequestMeter
from ..guard.sizes import Share, check_on_rss_limit, check_rss_limit, parse_size
from ..logs import writer
from ..logs.lines import safe_name
from ..logs.records import install_request_id_factory
from ..parameters import check_flag, check_known, check_min_duration
from ..request_id import generate_request_id, is_valid_request_id, request_id_var
from ..safety import internal_errors, report_internal_error
from .options import check_id_generator, check_leak_settings
from .policy import LeakCount, TracingLease

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..guard import MemoryGuard
    from ..leaks import LeakWatch, LeakWatchSettings

#: The message header that carries the request id from the sender to the worker.
HEADER = "sherlock_ai_request_id"
#: The consumers' ``protocol`` of a task run.
PROTOCOL = "celery"
#: The first word of a task run's name: ``TASK shop.tasks.resize``.
TASK_PREFIX = "TASK "
# The options of the web integrations that mean nothing for a task, with what to do instead.
_WEB_ONLY = {
    "header_name": "the id travels in the message header 'sherlock_ai_request_id'",
    "trust_incoming_id": "an id in a task's message is always used when it is valid",
    "echo_header": "a task has no response",
    "exclude_paths": "a task has no path; leave a task unmeasured by not instrumenting its app",
}
_ATTRIBUTE = "_sherlock_ai_run"
_logger = logging.getLogger("MonitoringLogger")


@dataclass(frozen=True)
class TaskOptions:
    """The options of :func:`instrument_celery`, named and checked as those of the web
    integrations (:class:`~sherlock_ai.integrations.RequestOptions`):

    - ``id_generator``: makes the fresh id of a run whose message carries none.
    - ``trace_malloc``: Traced/Peak figures for each run (tracemalloc runs in every worker
      process for its lifetime and slows every allocation).
    - ``min_duration``: runs that succeed faster than this many seconds are not logged.
    - ``leak_detection`` / ``leak_settings``: the leak watch, per task name, in each worker
      process (see docs/leak-detection.md).
    - ``memory_budget``: bytes or a size (``"50MB"``) for every task, or a mapping of task
      names (``"shop.tasks.resize"``) to budgets; kept as a mapping of run names
      (``"TASK shop.tasks.resize"``) to bytes.
    - ``rss_limit`` / ``on_rss_limit``: the worker process's RSS limit; ``"recycle"``
      replaces a prefork child after the task that crossed it (other pools: logged only).
    """

    id_generator: Callable[[], str] = generate_request_id
    trace_malloc: bool = False
    min_duration: float = 0.0
    leak_detection: bool = False
    leak_settings: Union[LeakWatchSettings, Mapping[str, Any], None] = None
    memory_budget: Union[int, str, Mapping[str, Union[int, str]], None] = None
    rss_limit: Union[int, str, Share, None] = None
    on_rss_limit: str = "log"

    def __post_init__(self) -> None:
        check_id_generator(self.id_generator)
        check_flag("trace_malloc", self.trace_malloc)
        object.__setattr__(self, "min_duration", check_min_duration(self.min_duration))
        check_flag("leak_detection", self.leak_detection)
        object.__setattr__(self, "leak_settings",
                           check_leak_settings(self.leak_settings, self.leak_detection))
        object.__setattr__(self, "memory_budget", _task_budgets(self.memory_budget))
        object.__setattr__(self, "rss_limit", check_rss_limit(self.rss_limit))
        check_on_rss_limit(self.on_rss_limit, self.rss_limit)

    @classmethod
    def from_kwargs(cls, keywords: Mapping[str, Any]) -> TaskOptions:
        """Options from keyword arguments; a web-only option or an unknown name is refused
        with what to write instead."""
        for name in keywords:
            if name in _WEB_ONLY:
                accepted = ", ".join(f.name for f in dataclasses.fields(cls))
                raise TypeError(f"{name} applies to web requests, not to Celery tasks "
                                f"({_WEB_ONLY[name]}); instrument_celery accepts: {accepted}")
        check_known(cls, keywords, "option(s)")
        return cls(**keywords)


class TaskKeywords(TypedDict, total=False):
    """The fields of :class:`TaskOptions` as keyword arguments of :func:`instrument_celery`."""

    id_generator: Callable[[], str]
    trace_malloc: bool
    min_duration: float
    leak_detection: bool
    leak_settings: Union[LeakWatchSettings, Mapping[str, Any], None]
    memory_budget: Union[int, str, Mapping[str, Union[int, str]], None]
    rss_limit: Union[int, str, Share, None]
    on_rss_limit: str


def _task_budgets(value: object) -> Union[int, Mapping[str, int], None]:
    """``memory_budget`` of tasks: one size, or task names to sizes keyed by run name."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return parse_size("memory_budget", value)
    budgets = {}
    for name, budget in value.items():
        if not isinstance(name, str) or not name or name.startswith("/") \
                or any(c.isspace() for c in name):
            raise ValueError("memory_budget keys must be task names such as "
                             f"'shop.tasks.resize' (not routes, no spaces), got {name!r}")
        budgets[TASK_PREFIX + name] = parse_size(f"memory_budget[{name!r}]", budget)
    return MappingProxyType(budgets)


class _ProcessState:
    """What one worker process measures with: built in that process, never inherited."""

    def __init__(self, options: TaskOptions) -> None:
        self.pid = os.getpid()
        self.lease = TracingLease() if options.trace_malloc else None
        self.leak_watch: Optional[LeakWatch] = None
        if options.leak_detection:
            from ..leaks import LeakWatch  # imported only by workers that turn it on

            settings: Optional[LeakWatchSettings] = options.leak_settings  # type: ignore
            self.leak_watch = LeakWatch(settings=settings)
        self.guard: Optional[MemoryGuard] = None
        if options.memory_budget is not None or options.rss_limit is not None:
            from ..guard import MemoryGuard  # imported only by workers that turn it on

            self.guard = MemoryGuard(options.memory_budget,  # type: ignore[arg-type]
                                     options.rss_limit, options.on_rss_limit)  # type: ignore
        # The leak watch, then the guard: its snapshot work stays out of the guard's view.
        own = tuple(c for c in (None if self.leak_watch is None else LeakCount(self.leak_watch),
                                self.guard) if c is not None)
        self.meter = RequestMeter(protocol=PROTOCOL, min_duration=options.min_duration,
                                  trace_malloc=options.trace_malloc,
                                  listeners=registry.with_own(own))

    def open(self, name: str) -> OpenRequest:
        """Start measuring the run of task ``name`` (in flight in the process's record as
        ``TASK {name}`` with the current request id)."""
        if self.lease is not None:
            with internal_errors:  # the run goes on without tracing
                self.lease.hold(self)
        return self.meter.open("TASK", name)


class TaskRun:
    """One task run: its request id and its measurement, opened at ``task_prerun`` and ended
    once at ``task_postrun`` (the one place where a run begins and ends)."""

    __slots__ = ("name", "task_id", "endpoint", "measuring", "id_token", "exc")

    def __init__(self, state: _ProcessState, name: str, task_id: str, request_id: str,
                 endpoint: Optional[Callable[..., Any]]) -> None:
        self.name = name
        self.task_id = task_id
        self.endpoint = endpoint
        #: What the run raised (``task_failure``), when it failed.
        self.exc: Optional[BaseException] = None
        # Set first: the process's flight record takes the run's id when the run opens.
        self.id_token = request_id_var.set(request_id)
        try:
            self.measuring = state.open(name)
        except BaseException:
            # A run that could not open leaves no id behind in the worker's context.
            request_id_var.reset(self.id_token)
            raise

    def end(self, celery_state: Optional[str]) -> None:
        """End the measurement (SUCCESS, ERROR with :attr:`exc`, or RETRY), then give the
        context its previous span and id back."""
        measuring = self.measuring
        exc = self.exc
        attributes: Dict[str, Any] = {"method": "TASK", "task": self.name,
                                      "task_id": self.task_id}
        if exc is None and celery_state == "FAILURE":
            problem: Optional[str] = "the task failed"
        else:
            problem = None
        measuring.end(TASK_PREFIX + self.name, attributes, problem, exc, self.endpoint,
                      RETRY if celery_state == "RETRY" else None)
        measuring.leave()
        try:
            request_id_var.reset(self.id_token)
        except ValueError:  # ended in another context than it began: forget the id there
            request_id_var.set("")


class CeleryInstrumentation:
    """What :func:`instrument_celery` connected for one app; :meth:`uninstrument` takes it
    out again."""

    def __init__(self, app: Any, options: TaskOptions) -> None:
        self.app = app
        #: The checked options.
        self.options = options
        self._state: Optional[_ProcessState] = None
        #: The level of a successful run's MEMORY line.
        self.line_level = logging.INFO
        self._lock = threading.Lock()
        self._names: BoundedCache[str, str] = BoundedCache(1024)
        self._receivers = (
            (signals.before_task_publish, self.before_task_publish),
            (signals.worker_process_init, self.worker_process_init),
            (signals.worker_process_shutdown, self.worker_process_shutdown),
            (signals.worker_before_create_process, self.worker_before_create_process),
            (signals.task_prerun, self.task_prerun),
            (signals.task_failure, self.task_failure),
            (signals.task_postrun, self.task_postrun),
            (signals.after_setup_logger, self.after_setup_logger),
            (signals.after_setup_task_logger, self.after_setup_task_logger),
        )
        for signal, receiver in self._receivers:
            signal.connect(receiver, weak=False)
        install_request_id_factory()

    def uninstrument(self) -> None:
        """Disconnect from Celery's signals (runs in progress end unmeasured)."""
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)
        self.app._sherlock_ai_instrumented = None

    @property
    def leak_watch(self) -> Optional[LeakWatch]:
        """This process's leak watch (``leak_detection=True``, once a task ran), else ``None``."""
        state = self._state
        return None if state is None or state.pid != os.getpid() else state.leak_watch

    def state(self) -> _ProcessState:
        """This process's measurement state, built on first use in each process."""
        state = self._state
        if state is None or state.pid != os.getpid():
            with self._lock:
                state = self._state
                if state is None or state.pid != os.getpid():
                    state = self._state = _ProcessState(self.options)
        return state

    # -- signals ----------------------------------------------------------------------------

    def before_task_publish(self, headers: Optional[Dict[str, Any]] = None,
                            **_: Any) -> None:
        request_id = request_id_var.get()
        if request_id and isinstance(headers, dict) and HEADER not in headers:
            headers[HEADER] = request_id  # a plain dict store: nothing here can fail

    def worker_process_init(self, **_: Any) -> None:
        with internal_errors:  # the worker runs on; its tasks unmeasured
            if self.options.on_rss_limit == "recycle":
                _declare_prefork_child()
            self.state()

    def worker_process_shutdown(self, **_: Any) -> None:
        # A prefork child leaves through os._exit (no atexit): its record is closed here, or
        # its graceful exit would read as a death.
        with internal_errors:
            recorder.close()

    def worker_before_create_process(self, sender: Any = None, **_: Any) -> None:
        with internal_errors:
            _tell_deaths_of_children(sender)

    def after_setup_logger(self, loglevel: Any = None, **_: Any) -> None:
        with internal_errors:
            from ..logs.setup import restore_files

            restore_files()
            if isinstance(loglevel, int) and loglevel > self.line_level:
                # Reported, not changed: the level is the worker's choice for its console too.
                writer.current.write_event(
                    _logger, logging.WARNING,
                    "sherlock_ai: the Celery worker's log level (%s) drops the %s MEMORY lines "
                    "of its tasks; start it with --loglevel %s",
                    (logging.getLevelName(loglevel), logging.getLevelName(self.line_level),
                     logging.getLevelName(self.line_level)))

    def after_setup_task_logger(self, logger: Optional[logging.Logger] = None,
                                **_: Any) -> None:
        with internal_errors:
            from ..logs.setup import restore_files

            restore_files(also=logger if isinstance(logger, logging.Logger) else None)

    def task_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        if task is None or getattr(task, "app", None) is not self.app:
            return
        with internal_errors:  # the task runs unmeasured
            request = task.request
            name = self._name(getattr(task, "name", None))
            run = TaskRun(self.state(), name, str(task_id), self._request_id(request),
                          getattr(task, "run", None))
            setattr(request, _ATTRIBUTE, run)

    def task_failure(self, sender: Any = None, exception: Optional[BaseException] = None,
                     **_: Any) -> None:
        run = _run_of(sender)
        if run is not None:
            run.exc = exception

    def task_postrun(self, task: Any = None, state: Optional[str] = None, **_: Any) -> None:
        run = _run_of(task)
        if run is None:
            return
        with internal_errors:
            delattr(task.request, _ATTRIBUTE)
            run.end(state)

    # -- helpers ----------------------------------------------------------------------------

    def _request_id(self, request: Any) -> str:
        """The id the message carries when valid; an eager run's caller's id; else fresh."""
        carried = getattr(request, HEADER, None)
        if carried is None:
            headers = getattr(request, "headers", None)
            carried = headers.get(HEADER) if isinstance(headers, dict) else None
        if is_valid_request_id(carried):
            return carried
        current = request_id_var.get()
        if current and getattr(request, "is_eager", False):
            return current
        generator = self.options.id_generator
        if generator is generate_request_id:
            return generate_request_id()
        try:
            fresh = generator()
        except Exception as exc:  # noqa: BLE001 - a broken generator must not fail tasks
            report_internal_error("id_generator", exc)
            return generate_request_id()
        return fresh if is_valid_request_id(fresh) else generate_request_id()

    def _name(self, name: object) -> str:
        """The log-safe task name (computed once per name, a bounded number kept)."""
        if not isinstance(name, str):
            return "<unnamed>"
        safe = self._names.get(name)
        if safe is None:
            safe = self._names.keep(name, safe_name(name))
        return safe


def _run_of(task: Any) -> Optional[TaskRun]:
    request = getattr(task, "request", None)
    run = getattr(request, _ATTRIBUTE, None)
    return run if isinstance(run, TaskRun) else None


def instrument_celery(app: Any, *, options: Optional[TaskOptions] = None,
                      **keywords: Unpack[TaskKeywords]) -> CeleryInstrumentation:
    """Carry request ids into ``app``'s tasks and measure each task run (see the module
    docstring). Options: ``options=TaskOptions(...)``, its fields as keywords, or both;
    checked now, once. Call it where the app is made (the worker and the senders import it).
    """
    if options is None:
        checked = TaskOptions.from_kwargs(keywords)
    elif not isinstance(options, TaskOptions):
        raise TypeError(f"options must be a TaskOptions, got {options!r}")
    else:
        if keywords:
            TaskOptions.from_kwargs(keywords)  # the same messages for a wrong name
        checked = dataclasses.replace(options, **keywords) if keywords else options
    if not hasattr(app, "tasks") or not hasattr(app, "conf"):
        raise TypeError(f"instrument_celery takes a Celery app, got {app!r}")
    if getattr(app, "_sherlock_ai_instrumented", None) is not None:
        raise RuntimeError("instrument_celery() was already called for this app")
    instrumentation = CeleryInstrumentation(app, checked)
    app._sherlock_ai_instrumented = instrumentation
    return instrumentation


# -- recycling a prefork child ---------------------------------------------------------------

# Set by the guard's recycle (from within a task); read by the child's loop before it takes
# its next job.
_recycle_requested = False


def _declare_prefork_child() -> None:
    """In a prefork child (called from ``worker_process_init``): make the pool's wait for the
    next job leave the loop once a recycle was asked, the way billiard's own
    ``max_memory_per_child`` does after a task, and declare that the pool replaces us."""
    worker = _billiard_worker()
    if worker is None:
        return
    from ..guard.supervisor import declare_supervisor

    wait_for_job = worker.wait_for_job

    def wait_unless_recycled(*args: Any, **kwargs: Any) -> Any:
        if _recycle_requested:
            # billiard's own way out of its loop (its shutdown sentinel raises this too); the
            # pool starts a new child in place of one that exits.
            raise SystemExit(0)
        return wait_for_job(*args, **kwargs)

    worker.wait_for_job = wait_unless_recycled
    declare_supervisor("celery prefork", _request_recycle)


def _request_recycle() -> None:
    global _recycle_requested
    _recycle_requested = True


def _billiard_worker() -> Any:
    """The billiard pool ``Worker`` whose child process this is, found on the stack of
    ``worker_process_init`` (``Worker.__call__`` -> ``after_fork`` -> the initializer)."""
    from billiard.pool import Worker  # Celery's own pool library (celery's asynpool subclasses it)

    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Worker):
            return owner
        frame = frame.f_back
    return None


# -- telling a prefork child's death --------------------------------------------------------

_TOLD_BY = "celery main process pid {}"


def _tell_deaths_of_children(pool: Any) -> None:
    """In the worker's main process, as its prefork pool is about to fork a child (the first
    time for this pool): tell each child's death, with its signal or exit code, as the pool
    reaps it, and let the children know their supervisor tells their deaths."""
    reap = getattr(pool, "_join_exited_workers", None)
    children = getattr(pool, "_pool", None)
    if reap is None or not isinstance(children, list) \
            or getattr(reap, "_sherlock_ai_tells", False):
        return
    told_by = _TOLD_BY.format(os.getpid())

    def reap_telling(*args: Any, **kwargs: Any) -> Any:
        before = list(pool._pool)
        try:
            return reap(*args, **kwargs)
        finally:
            with internal_errors:
                _tell_reaped(before, pool._pool, told_by)

    reap_telling._sherlock_ai_tells = True  # type: ignore[attr-defined]
    pool._join_exited_workers = reap_telling
    # Inherited by the children forked from now on: their siblings leave the telling to us.
    os.environ[recorder.SUPERVISOR_ENV] = str(os.getpid())


def _tell_reaped(before: List[Any], after: List[Any], told_by: str) -> None:
    """Tell the deaths of the children of ``before`` that are not in ``after`` (reaped)."""
    from ..deaths.telling import tell_child_death

    remaining = {id(child) for child in after}
    for child in before:
        if id(child) in remaining:
            continue
        pid, exit_code = getattr(child, "pid", None), getattr(child, "exitcode", None)
        if not isinstance(pid, int):
            continue
        # billiard's exit code of a child ended by a signal is minus the signal's number.
        if isinstance(exit_code, int) and exit_code < 0:
            tell_child_death(pid, told_by, signal=-exit_code)
        else:
            tell_child_death(pid, told_by,
                             exit_code=exit_code if isinstance(exit_code, int) else None)
