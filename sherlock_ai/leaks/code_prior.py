"""Which routes' code an allocation was made in: the lines of each endpoint's code, and a
lookup from a tracemalloc traceback to (allocation site, frame in endpoint code).

This is the *prior* of the leak watch's attribution: a line of one route's own endpoint runs
only in that route's requests, so growth there is that route's. Code shared by several
routes (and code outside every endpoint: helpers, libraries) names no single route; there the
per-route request counts decide (:mod:`sherlock_ai.leaks.fit`).
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any, Dict, List, Optional, Tuple

from ..engine.heap import Site, allocation_site

#: ``(filename, first line, last line)`` of a piece of code.
LineRange = Tuple[str, int, int]


def _last_line(code: types.CodeType) -> int:
    last = code.co_firstlineno
    lines = getattr(code, "co_lines", None)
    if lines is not None:
        numbers = (line for _, _, line in lines())
    else:  # Python 3.9
        import dis

        numbers = (line for _, line in dis.findlinestarts(code))
    for line in numbers:
        if line is not None and line > last:
            last = line
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _functions(endpoint: Any) -> List[types.FunctionType]:
    """The plain functions whose code is the endpoint's: the function itself (decorators
    unwrapped; with the methods of its ``view_class``), a partial's or bound method's
    function, a class's methods (its bases' too), or a callable object's ``__call__``."""
    target = endpoint
    for _ in range(16):  # wrappers of wrappers, bounded
        try:
            target = inspect.unwrap(target)
        except ValueError:  # a __wrapped__ cycle
            break
        if isinstance(target, functools.partial):
            target = target.func
        elif inspect.ismethod(target):
            target = target.__func__
        else:
            break
    if inspect.isfunction(target):
        # Flask's and Django's as_view() make a function that serves a class's methods.
        view_class = getattr(target, "view_class", None)
        return [target] + (_methods(view_class) if inspect.isclass(view_class) else [])
    if inspect.isclass(target):
        return _methods(target)
    for klass in type(target).__mro__[:-1]:  # a callable object's class, not object's
        call = vars(klass).get("__call__")
        if call is not None:
            return [call] if inspect.isfunction(call) else []
    return []


def _methods(klass: type) -> List[types.FunctionType]:
    """A class's methods and those it inherits (Starlette's ``HTTPEndpoint.dispatch``, a
    mixin's): they run only in the requests of routes served by such classes."""
    found = []
    for base in klass.__mro__[:-1]:  # not object's
        for member in vars(base).values():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            if inspect.isfunction(member):
                found.append(member)
    return found


def code_ranges(endpoint: Any) -> List[LineRange]:
    """The line ranges of ``endpoint``'s code (empty when it has no Python code of its own)."""
    ranges = []
    for function in _functions(endpoint):
        code = getattr(function, "__code__", None)
        if isinstance(code, types.CodeType):
            ranges.append((code.co_filename, code.co_firstlineno, _last_line(code)))
    return ranges


#: Route ids whose endpoints share one piece of code.
Routes = Tuple[int, ...]


class EndpointIndex:
    """Route ids by the lines of their endpoints' code. Routes whose endpoints share code (a
    factory's functions, one class or view under several URL rules) share its lines: the code
    alone cannot tell them apart. Not thread-safe: build a new one (cheap, done when a route
    is first seen with its endpoint) and swap it in; readers keep the one they took."""

    def __init__(self, by_file: Optional[Dict[str, Tuple[Tuple[int, int, Routes], ...]]] = None):
        self._by_file = dict(by_file or {})

    def with_endpoint(self, route_id: int, ranges: List[LineRange]) -> EndpointIndex:
        """A copy that also knows that ``route_id`` is served by code on ``ranges``."""
        by_file = dict(self._by_file)
        for filename, first, last in ranges:
            spans = list(by_file.get(filename, ()))
            for i, (f, la, routes) in enumerate(spans):
                if (f, la) == (first, last):
                    if route_id not in routes:
                        spans[i] = (f, la, routes + (route_id,))
                    break
            else:
                spans.append((first, last, (route_id,)))
            # Innermost first: a function nested in another endpoint's function is its own.
            by_file[filename] = tuple(sorted(spans, key=lambda s: s[1] - s[0]))
        return EndpointIndex(by_file)

    def routes_at(self, filename: str, lineno: int) -> Optional[Routes]:
        """The routes whose endpoint code holds this line, if any."""
        for first, last, routes in self._by_file.get(filename, ()):
            if first <= lineno <= last:
                return routes
        return None

    def key_of(self, traceback: Any) -> Optional[Tuple[Site, Optional[Site]]]:
        """``(allocation site, the newest frame in endpoint code or None)`` of a traceback;
        ``None`` for monitoring's own allocations."""
        site = allocation_site(traceback)
        if site is None:
            return None
        by_file = self._by_file
        for frame in reversed(traceback):  # newest first
            if frame.filename in by_file and \
                    self.routes_at(frame.filename, frame.lineno) is not None:
                return site, (frame.filename, frame.lineno)
        return site, None
