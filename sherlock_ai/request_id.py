"""Request ids carried through ``contextvars``: threads run via ``contextvars.copy_context``
(asyncio tasks, Starlette's threadpool, asgiref's ``sync_to_async``) see the id of the
request that started them."""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from random import getrandbits
from typing import Iterator, Optional

_request_id: ContextVar[str] = ContextVar("sherlock_ai_request_id", default="")

MAX_REQUEST_ID_LENGTH = 128
_VALID = re.compile(rf"[A-Za-z0-9._:\-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def generate_request_id() -> str:
    """A fresh id: 16 lowercase hex characters (64 random bits)."""
    return f"{getrandbits(64):016x}"


def is_valid_request_id(value: object) -> bool:
    """True for 1 to 128 characters of ``[A-Za-z0-9._:-]``: safe to log and echo as is."""
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def _checked(req_id: Optional[str]) -> str:
    if req_id is None:
        return generate_request_id()
    if not is_valid_request_id(req_id):
        raise ValueError(
            "request id must be 1 to 128 characters of letters, digits and '._:-'; "
            "pass None to generate one"
        )
    return req_id


def set_request_id(req_id: Optional[str] = None) -> str:
    """Set the current context's request id (a fresh one when ``None``) and return it."""
    value = _checked(req_id)
    _request_id.set(value)
    return value


def get_request_id() -> str:
    """The current context's request id, ``""`` when none is set."""
    return _request_id.get()


def clear_request_id() -> None:
    """Forget the current context's request id."""
    _request_id.set("")


@contextmanager
def request_id_context(req_id: Optional[str] = None) -> Iterator[str]:
    """Set a request id for the block and restore the previous one afterwards."""
    token = _request_id.set(_checked(req_id))
    try:
        yield _request_id.get()
    finally:
        _request_id.reset(token)
