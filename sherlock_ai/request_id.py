"""Request ids carried through ``contextvars``: asyncio tasks and code run via
``contextvars.copy_context`` (Starlette's threadpool, ``asyncio.to_thread``, asgiref's
``sync_to_async``) see the id of the request that started them; a ``threading.Thread`` or an
executor does so when its function is wrapped in :func:`carry_context`."""

from __future__ import annotations

import functools
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

if TYPE_CHECKING:
    from typing_extensions import TypeGuard  # in typing from Python 3.10

#: The current request id (``""`` outside any request). Integrations set it with a token and
#: reset it right after the work it belongs to; user code calls the functions below.
request_id_var: ContextVar[str] = ContextVar("sherlock_ai_request_id", default="")

MAX_REQUEST_ID_LENGTH = 128
# At least one letter or digit: "-" marks the lines written outside any request, and ids made
# of punctuation only ("--", "...", ":") would read as that marker or as nothing.
_VALID = re.compile(rf"(?=[._:\-]*[A-Za-z0-9])[A-Za-z0-9._:\-]{{1,{MAX_REQUEST_ID_LENGTH}}}")

F = TypeVar("F", bound=Callable[..., Any])


def generate_request_id() -> str:
    """A fresh id: 16 lowercase hex characters (64 bits from ``os.urandom``).

    The operating system's generator, not ``random``: ids are echoed to clients, and the
    outputs of a Mersenne Twister let a client compute the ids of other requests. The kernel is
    read for 256 ids at once (a system call per request costs more than the rest of the id's
    work); each id is bytes of its own, so no id tells anything of another. A forked child
    drops the ids its parent had not handed out, so workers never share one.
    """
    request_id = next(_pool, None)  # one C call: safe between threads without a lock
    if request_id is None:
        request_id = _refill()
    return request_id


_BATCH = 256
_pool: Iterator[str] = iter(())


def _refill() -> str:
    global _pool
    hexed = os.urandom(8 * _BATCH).hex()
    # Threads refilling at once each take from their own new pool: none hands out an id twice.
    fresh = iter([hexed[i:i + 16] for i in range(0, 16 * _BATCH, 16)])
    _pool = fresh
    return next(fresh)


def _forget_pool() -> None:
    global _pool
    _pool = iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def is_valid_request_id(value: object) -> TypeGuard[str]:
    """True for 1 to 128 characters of ``[A-Za-z0-9._:-]`` with at least one letter or digit:
    safe to log and echo as is, and never mistaken for ``-`` (no request)."""
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def _checked(req_id: Optional[str]) -> str:
    if req_id is None:
        return generate_request_id()
    if not is_valid_request_id(req_id):
        raise ValueError(
            "request id must be 1 to 128 characters of letters, digits and '._:-', with at "
            "least one letter or digit; pass None to generate one"
        )
    return req_id


def set_request_id(req_id: Optional[str] = None) -> str:
    """Set the current context's request id (a fresh one when ``None``) and return it."""
    value = _checked(req_id)
    request_id_var.set(value)
    return value


def get_request_id() -> str:
    """The current context's request id, ``""`` when none is set."""
    return request_id_var.get()


def clear_request_id() -> None:
    """Forget the current context's request id."""
    request_id_var.set("")


@contextmanager
def request_id_context(req_id: Optional[str] = None) -> Iterator[str]:
    """Set a request id for the block and restore the previous one afterwards."""
    token = request_id_var.set(_checked(req_id))
    try:
        yield request_id_var.get()
    finally:
        request_id_var.reset(token)


def carry_context(func: F) -> F:
    """``func`` bound to the calling context: run in a thread or an executor, it sees the
    request id and the open measurement of the code that called ``carry_context``.

    ``threading.Thread``, ``ThreadPoolExecutor`` and ``loop.run_in_executor`` start their
    functions in an empty context (their lines would carry ``-``)::

        threading.Thread(target=carry_context(work), args=(item,)).start()
        pool.submit(carry_context(work), item)
        pool.map(carry_context(work), items)

    Each call runs in its own copy of the context captured here (what ``func`` sets stays in
    that copy), so one wrapped function may run in several threads at once.
    """
    captured = copy_context()

    @functools.wraps(func)
    def in_context(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(func, *args, **kwargs)

    return in_context  # type: ignore[return-value]
