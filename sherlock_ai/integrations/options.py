"""The options of the web integrations: :class:`RequestOptions` holds their defaults and checks
them once; :class:`RequestKeywords` gives their names and types to keyword arguments.

Every integration takes ``options=RequestOptions(...)``, keywords, or both (keywords then
replace those fields), and keeps the one checked object that :func:`resolve_options` returns.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    FrozenSet,
    Iterable,
    Mapping,
    Optional,
    TypedDict,
    Union,
)

from ..guard.sizes import (
    Share,
    check_memory_budget,
    check_on_rss_limit,
    check_rss_limit,
    check_shed_timeout,
)
from ..parameters import check_flag, check_known, check_min_duration, from_keywords
from ..request_id import generate_request_id

if TYPE_CHECKING:
    from ..leaks import LeakWatchSettings


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")


def check_header_name(name: object) -> str:
    """An HTTP header name (an RFC 9110 token of at most 128 characters)."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            "header_name must be an HTTP header name such as 'X-Request-ID' (1 to 128 "
            f"letters, digits or !#$%&'*+-.^_`|~), got {name!r}"
        )
    return name


def check_id_generator(generator: object) -> Callable[[], str]:
    """A callable that makes request ids."""
    if not callable(generator):
        raise TypeError(
            "id_generator must be a callable taking no arguments and returning a str id, "
            f"got {generator!r}"
        )
    return generator


def check_exclude_paths(paths: object) -> FrozenSet[str]:
    """Exact paths (``"/health"``) and prefixes ending in ``/`` (``"/static/"``), as a set."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise TypeError(
            "exclude_paths must be an iterable of paths such as ['/health', '/static/'], "
            f"got {paths!r}"
        )
    checked = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"each excluded path must be a str starting with '/', got {path!r}")
        if path == "/":
            raise ValueError(
                "exclude_paths entry '/' would be a prefix of every path (entries ending in '/' "
                "are prefixes); to skip all requests, do not install the middleware"
            )
        if any(c in path for c in "*?[]"):
            raise ValueError(
                f"exclude_paths takes exact paths ('/health') and prefixes ending in '/' "
                f"('/static/'), not patterns: got {path!r}"
            )
        checked.append(path)
    return frozenset(checked)


def check_leak_settings(settings: object, leak_detection: bool) -> Any:
    """The :class:`~sherlock_ai.LeakWatchSettings` of a mapping of settings (or the settings
    themselves); ``None`` for ``None``. Only valid together with ``leak_detection=True``."""
    if settings is None:
        return None
    from ..leaks import LeakWatchSettings  # imported only by services that watch for leaks

    if not isinstance(settings, (Mapping, LeakWatchSettings)):
        raise TypeError(
            "leak_settings must be a mapping of LeakWatch settings such as "
            f"{{'trace_share': 0.05}} (or a LeakWatchSettings), got {settings!r}"
        )
    if not leak_detection:
        raise ValueError("leak_settings only apply with leak_detection=True")
    if isinstance(settings, LeakWatchSettings):
        return settings
    return LeakWatchSettings.from_kwargs(dict(settings))


@dataclass(frozen=True)
class RequestOptions:
    """The options every integration accepts, checked when the object is created.

    - ``header_name``: the request header read for an incoming id and the response header that
      echoes it.
    - ``trust_incoming_id``: use a valid incoming id (see
      :func:`sherlock_ai.is_valid_request_id`); anything else is replaced by a fresh id, never
      echoed or logged. Off by default: a client choosing the id can file its lines under
      another request's id; turn it on behind a proxy that sets the header itself.
    - ``id_generator``: makes fresh ids; an id it returns that is not valid (or an exception)
      falls back to :func:`sherlock_ai.generate_request_id`.
    - ``echo_header``: send the id back in ``header_name`` (replacing one the app set).
    - ``trace_malloc``: add Traced/Peak figures; tracemalloc then runs for the middleware's
      lifetime and slows every allocation of the process.
    - ``min_duration``: requests that succeed faster than this many seconds are not logged.
    - ``exclude_paths``: paths that get an id but no measurement: an entry ending in ``/``
      is a prefix (``"/static/"`` matches ``/static/app.css``), any other an exact path
      (``"/health"``). Any iterable of paths; kept as a frozenset.
    - ``leak_detection``: watch for routes whose requests keep retaining memory and log a
      ``LEAK SUSPECT`` warning naming the route and the line (see docs/leak-detection.md).
    - ``leak_settings``: settings of that watch, as a :class:`sherlock_ai.LeakWatchSettings`
      or a mapping of its fields, e.g. ``{"trace_share": 0.01}`` for the low-cost setting;
      kept as a ``LeakWatchSettings``.
    - ``memory_budget``: a request that needs more memory than this (bytes, or a size such as
      ``"50MB"``; its RSS peak, memory freed before it ended included, or its traced peak with
      ``trace_malloc``) gets one ``MEMORY BUDGET`` warning; or a mapping of route templates
      (``"/export"``, ``"POST /export"``) to budgets, for those routes only: a key that names
      no route of the app fails its start-up (or, with no start-up event, is said at its
      first request). Kept in bytes. See docs/memory-guard.md.
    - ``rss_limit``: the process's RSS limit: bytes, a size such as ``"800MB"``, or a share
      such as ``"80%"`` of what the process may use (cgroup limit, else physical memory; read
      once, when the middleware is set up). Kept as bytes or a ``Share``.
    - ``on_rss_limit``: what crossing ``rss_limit`` does: ``"log"`` (a warning naming the
      routes that grew most), ``"shed"`` (503 with ``Retry-After`` until RSS is back under,
      excluded paths still served) or ``"recycle"`` (the worker finishes its requests and
      exits; its server starts a new one).
    - ``shed_timeout``: seconds a worker may shed (``on_rss_limit="shed"``) without coming back
      under ``rss_limit``; then it is recycled where its server replaces workers (gunicorn,
      ``uvicorn --workers``), else its excluded paths answer 503 too, so that a health check
      sees it. ``None``: shed until RSS is back under, however long.
    """

    header_name: str = "X-Request-ID"
    trust_incoming_id: bool = False
    id_generator: Callable[[], str] = generate_request_id
    echo_header: bool = True
    trace_malloc: bool = False
    min_duration: float = 0.0
    exclude_paths: Iterable[str] = frozenset()
    leak_detection: bool = False
    leak_settings: Union[LeakWatchSettings, Mapping[str, Any], None] = None
    memory_budget: Union[int, str, Mapping[str, Union[int, str]], None] = None
    rss_limit: Union[int, str, Share, None] = None
    on_rss_limit: str = "log"
    shed_timeout: Optional[float] = 60.0

    def __post_init__(self) -> None:
        check_header_name(self.header_name)
        check_flag("trust_incoming_id", self.trust_incoming_id)
        check_id_generator(self.id_generator)
        check_flag("echo_header", self.echo_header)
        check_flag("trace_malloc", self.trace_malloc)
        object.__setattr__(self, "min_duration", check_min_duration(self.min_duration))
        object.__setattr__(self, "exclude_paths", check_exclude_paths(self.exclude_paths))
        check_flag("leak_detection", self.leak_detection)
        object.__setattr__(self, "leak_settings",
                           check_leak_settings(self.leak_settings, self.leak_detection))
        object.__setattr__(self, "memory_budget", check_memory_budget(self.memory_budget))
        object.__setattr__(self, "rss_limit", check_rss_limit(self.rss_limit))
        check_on_rss_limit(self.on_rss_limit, self.rss_limit)
        object.__setattr__(self, "shed_timeout",
                           check_shed_timeout(self.shed_timeout))

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> RequestOptions:
        """Options from keyword arguments, refusing unknown names with the accepted ones."""
        return from_keywords(cls, options, "option(s)")


class RequestKeywords(TypedDict, total=False):
    """The fields of :class:`RequestOptions` as keyword arguments of the integrations (their
    defaults are those of ``RequestOptions``)."""

    header_name: str
    trust_incoming_id: bool
    id_generator: Callable[[], str]
    echo_header: bool
    trace_malloc: bool
    min_duration: float
    exclude_paths: Iterable[str]
    leak_detection: bool
    leak_settings: Union[LeakWatchSettings, Mapping[str, Any], None]
    memory_budget: Union[int, str, Mapping[str, Union[int, str]], None]
    rss_limit: Union[int, str, Share, None]
    on_rss_limit: str
    shed_timeout: Optional[float]


def resolve_options(
    options: Optional[RequestOptions], keywords: Mapping[str, Any]
) -> RequestOptions:
    """The checked options of an integration: ``options`` (the defaults when ``None``) with
    ``keywords`` replacing its fields. ``options`` itself when no keyword is given."""
    if options is None:
        return RequestOptions.from_kwargs(keywords)
    if not isinstance(options, RequestOptions):
        raise TypeError(f"options must be a RequestOptions, got {options!r}")
    if not keywords:
        return options
    check_known(RequestOptions, keywords, "option(s)")
    return dataclasses.replace(options, **keywords)
