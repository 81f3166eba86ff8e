"""Outgoing calls carry the request id: while a request id is set, requests made with httpx
(``Client``, ``AsyncClient``, ``httpx.get``...) and requests (``Session``, ``requests.get``...)
send it in a header, so the next service's sherlock_ai (``trust_incoming_id=True``) files its
lines under the same id.

- :func:`propagate_request_id` turns it on for every client of the process, once.
- Per client instead: :class:`RequestIdTransport` / :class:`AsyncRequestIdTransport` (httpx)
  and :class:`RequestIdAdapter` (requests).

The header is added for each hop of a request whose host is allowed and taken off again once
the hop is sent: a redirect to a host outside ``allowed_hosts`` does not carry it, and the
request object is left as the caller built it. A header the caller set is never replaced.
httpx and requests are imported only when installed (and only here).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any, Callable, Dict, FrozenSet, Iterable, Optional, Tuple
from urllib.parse import urlsplit

from ..bounded import BoundedCache
from ..request_id import request_id_var
from .options import check_header_name

#: Host suffixes of internal networks: Kubernetes services, mDNS, cloud and home DNS zones.
INTERNAL_SUFFIXES = (".local", ".internal", ".localdomain", ".svc", ".cluster.local",
                     ".localhost", ".lan", ".home.arpa")
# Hosts decided per host name, a bounded number kept.
_CACHE_LIMIT = 1024


def _check_hosts(allowed_hosts: object) -> Optional[FrozenSet[str]]:
    if allowed_hosts is None:
        return None
    if isinstance(allowed_hosts, (str, bytes)) or not isinstance(allowed_hosts, Iterable):
        raise TypeError("allowed_hosts must be a list of host names such as "
                        f"['billing.internal', '.example.com'] or None, got {allowed_hosts!r}")
    hosts = []
    for host in allowed_hosts:
        if not isinstance(host, str) or not host or any(c in host for c in "/: ") \
                and not _is_ip(host):
            raise ValueError(
                "each allowed host must be a host name ('api.example.com'), a domain with its "
                "subdomains ('.example.com'), an IP address or '*', without scheme or port, "
                f"got {host!r}")
        hosts.append(host.lower().strip("[]"))
    return frozenset(hosts)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def internal_host(host: str) -> bool:
    """Whether ``host`` is on an internal network: ``localhost``, a loopback or private IP
    address, a name without a dot (a service name in Docker or Kubernetes) or a name under
    :data:`INTERNAL_SUFFIXES`."""
    if host == "localhost" or "." not in host and ":" not in host:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.endswith(INTERNAL_SUFFIXES)
    return address.is_private or address.is_loopback


class OutgoingIds:
    """Which outgoing requests get the id, and in which header (checked once, here).

    ``allowed_hosts``: ``None`` (the default) sends the id to internal hosts only (see
    :func:`internal_host`): the services that log with sherlock_ai are yours and mostly on
    internal names, while an id sent to a third party's API is of no use to you and lets
    that party link your users' requests. Else host names (``"billing.example.com"``),
    domains with their subdomains (``".example.com"``), IP addresses, or ``"*"`` for every
    host. ``header_name``: as the middleware's (``X-Request-ID``)."""

    def __init__(self, allowed_hosts: Optional[Iterable[str]] = None, *,
                 header_name: str = "X-Request-ID") -> None:
        self.header_name = check_header_name(header_name)
        self.allowed_hosts = _check_hosts(allowed_hosts)
        hosts = self.allowed_hosts or frozenset()
        self._every_host = "*" in hosts
        self._domains = tuple(h for h in hosts if h.startswith("."))
        self._decided: BoundedCache[str, bool] = BoundedCache(_CACHE_LIMIT)

    def allows(self, host: Optional[str]) -> bool:
        """Whether a request to ``host`` (lower case, as URL parsers give it) gets the id."""
        if not host:
            return False
        decided = self._decided.get(host)
        if decided is None:
            decided = self._decided.keep(host, self._decide(host))
        return decided

    def _decide(self, host: str) -> bool:
        hosts = self.allowed_hosts
        if hosts is None:
            return internal_host(host)
        return self._every_host or host in hosts or any(
            host.endswith(domain) or host == domain[1:] for domain in self._domains)

    def header(self, host: Optional[str], has: Callable[[str], bool]) -> Optional[str]:
        """The id to add to a request to ``host`` whose headers ``has`` none of its own, else
        ``None`` (no id set, host not allowed, or the caller's header)."""
        request_id = request_id_var.get()
        if not request_id or not self.allows(host) or has(self.header_name):
            return None
        return request_id


# -- httpx ----------------------------------------------------------------------------------


def _httpx_send(ids: OutgoingIds, send: Callable[..., Any], transport: Any,
                request: Any) -> Any:
    if not request_id_var.get():
        return send(transport, request)
    headers = request.headers
    value = ids.header(request.url.host, headers.__contains__)
    if value is None:
        return send(transport, request)
    name = ids.header_name
    headers[name] = value
    try:
        return send(transport, request)
    finally:
        headers.pop(name, None)


async def _httpx_send_async(ids: OutgoingIds, send: Callable[..., Any], transport: Any,
                            request: Any) -> Any:
    if not request_id_var.get():
        return await send(transport, request)
    headers = request.headers
    value = ids.header(request.url.host, headers.__contains__)
    if value is None:
        return await send(transport, request)
    name = ids.header_name
    headers[name] = value
    try:
        return await send(transport, request)
    finally:
        headers.pop(name, None)


def _call_inner(transport: Any, request: Any) -> Any:
    return transport.handle_request(request)


def _call_inner_async(transport: Any, request: Any) -> Any:
    return transport.handle_async_request(request)


class RequestIdTransport:
    """An httpx transport that adds the request id to the requests it sends, then hands them
    to ``transport`` (a new ``httpx.HTTPTransport()`` when ``None``):
    ``httpx.Client(transport=RequestIdTransport(allowed_hosts=[...]))``. Settings as for
    :func:`propagate_request_id`."""

    def __init__(self, transport: Any = None, *, allowed_hosts: Optional[Iterable[str]] = None,
                 header_name: str = "X-Request-ID") -> None:
        import httpx

        self.ids = OutgoingIds(allowed_hosts, header_name=header_name)
        self.transport = httpx.HTTPTransport() if transport is None else transport

    def handle_request(self, request: Any) -> Any:
        return _httpx_send(self.ids, _call_inner, self.transport, request)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RequestIdTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.transport.__exit__(*exc_info)


class AsyncRequestIdTransport:
    """:class:`RequestIdTransport` for ``httpx.AsyncClient`` (wraps an
    ``httpx.AsyncHTTPTransport()`` when ``transport`` is ``None``)."""

    def __init__(self, transport: Any = None, *, allowed_hosts: Optional[Iterable[str]] = None,
                 header_name: str = "X-Request-ID") -> None:
        import httpx

        self.ids = OutgoingIds(allowed_hosts, header_name=header_name)
        self.transport = httpx.AsyncHTTPTransport() if transport is None else transport

    async def handle_async_request(self, request: Any) -> Any:
        return await _httpx_send_async(self.ids, _call_inner_async, self.transport, request)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncRequestIdTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.transport.__aexit__(*exc_info)


# -- requests -------------------------------------------------------------------------------


def _requests_send(ids: OutgoingIds, send: Callable[..., Any], adapter: Any, request: Any,
                   *args: Any, **kwargs: Any) -> Any:
    if not request_id_var.get():
        return send(adapter, request, *args, **kwargs)
    headers = request.headers
    value = ids.header(urlsplit(request.url).hostname, headers.__contains__)
    if value is None:
        return send(adapter, request, *args, **kwargs)
    name = ids.header_name
    headers[name] = value
    try:
        return send(adapter, request, *args, **kwargs)
    finally:
        headers.pop(name, None)


def _adapter_class() -> Any:
    from requests.adapters import HTTPAdapter

    class RequestIdAdapter(HTTPAdapter):
        """A requests transport adapter that adds the request id to the requests it sends:
        ``session.mount("https://", RequestIdAdapter(allowed_hosts=[...]))`` (and
        ``"http://"``). Settings as for :func:`propagate_request_id`; other keywords go to
        ``HTTPAdapter``."""

        def __init__(self, *args: Any, allowed_hosts: Optional[Iterable[str]] = None,
                     header_name: str = "X-Request-ID", **kwargs: Any) -> None:
            self.ids = OutgoingIds(allowed_hosts, header_name=header_name)
            super().__init__(*args, **kwargs)

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return _requests_send(self.ids, HTTPAdapter.send, self, request, *args, **kwargs)

    return RequestIdAdapter


def __getattr__(name: str) -> Any:
    # RequestIdAdapter subclasses requests' HTTPAdapter: made on first use, so that importing
    # this module does not import requests.
    if name == "RequestIdAdapter":
        cls = globals()["RequestIdAdapter"] = _adapter_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the switch for every client ------------------------------------------------------------

_lock = threading.Lock()
# The settings the patched methods read, and the methods they replaced (to put back).
_settings: Optional[OutgoingIds] = None
_originals: Dict[Tuple[Any, str], Any] = {}


def _patch(owner: Any, method: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__[method]
    _originals[(owner, method)] = original
    setattr(owner, method, make(original))


def _patch_httpx() -> None:
    try:
        import httpx
    except ImportError:
        return

    def sync(original: Any) -> Any:
        def handle_request(self: Any, request: Any) -> Any:
            ids = _settings
            if ids is None:
                return original(self, request)
            return _httpx_send(ids, original, self, request)
        return handle_request

    def asynchronous(original: Any) -> Any:
        async def handle_async_request(self: Any, request: Any) -> Any:
            ids = _settings
            if ids is None:
                return await original(self, request)
            return await _httpx_send_async(ids, original, self, request)
        return handle_async_request

    _patch(httpx.HTTPTransport, "handle_request", sync)
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", asynchronous)


def _patch_requests() -> None:
    try:
        from requests.adapters import HTTPAdapter
    except ImportError:
        return

    def sync(original: Any) -> Any:
        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            ids = _settings
            if ids is None or isinstance(getattr(self, "ids", None), OutgoingIds):
                # Off, or a RequestIdAdapter, which adds the id by its own settings.
                return original(self, request, *args, **kwargs)
            return _requests_send(ids, original, self, request, *args, **kwargs)
        return send

    _patch(HTTPAdapter, "send", sync)


def propagate_request_id(allowed_hosts: Optional[Iterable[str]] = None, *,
                         header_name: str = "X-Request-ID") -> OutgoingIds:
    """Send the current request id with every outgoing httpx and requests request of this
    process whose host is allowed (see :class:`OutgoingIds` for ``allowed_hosts``, whose
    default is internal hosts only). Call it once at start-up; a second call only replaces
    the settings. Costs one context-variable read per request while no id is set. Returns
    the checked settings."""
    settings = OutgoingIds(allowed_hosts, header_name=header_name)
    global _settings
    with _lock:
        if not _originals:
            _patch_httpx()
            _patch_requests()
        _settings = settings
    return settings


def stop_propagating_request_id() -> None:
    """Undo :func:`propagate_request_id`: the clients' own methods are put back."""
    global _settings
    with _lock:
        _settings = None
        for (owner, method), original in _originals.items():
            setattr(owner, method, original)
        _originals.clear()
