"""Outgoing calls carry the request id: two real uvicorn services on 127.0.0.1, A calling B
with httpx (sync and async) and requests (a Session and the module functions); the
per-client forms from this process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import List

import httpx
import pytest
import requests

from sherlock_ai import request_id_context
from sherlock_ai.integrations.outgoing import (
    AsyncRequestIdTransport,
    OutgoingIds,
    RequestIdAdapter,
    RequestIdTransport,
    internal_host,
    propagate_request_id,
    stop_propagating_request_id,
)
from web_support import SUPPORT, server

SERVICES = str(SUPPORT / "outgoing_services.py")
CLIENTS = ["httpx_sync", "httpx_async", "requests_session", "requests_module"]


def memory_lines(logs: Path) -> List[dict]:
    path = logs / "monitoring.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == "memory"]


@pytest.mark.servers
def test_b_logs_under_the_id_of_the_request_of_a_that_called_it(tmp_path):
    with server(SERVICES, "b", str(tmp_path / "b-logs"), cwd=tmp_path) as b, \
            server(SERVICES, "a", str(tmp_path / "a-logs"), str(b.port), cwd=tmp_path) as a:
        called = {c: httpx.get(f"{a.url}/call/{c}", timeout=30) for c in CLIENTS}
        # A host outside allowed_hosts (localhost: only 127.0.0.1 is allowed) gets no id,
        # nor does a redirect from an allowed host to it; a caller's own header is kept.
        elsewhere = httpx.get(f"{a.url}/call/requests_module", params={"host": "localhost"},
                              timeout=30).json()
        redirected = {c: httpx.get(f"{a.url}/call/{c}", params={"path": "/hop"},
                                   timeout=30).json() for c in CLIENTS}
        own = {c: httpx.get(f"{a.url}/call/{c}", params={"caller_id": "callers-own"},
                            timeout=30).json() for c in CLIENTS}
    for client, answer in called.items():
        body = answer.json()
        assert body["id"] == answer.headers["x-request-id"] and body["id"]
        assert body["b_received"] == body["id"], client
    b_ids = {r["request_id"] for r in memory_lines(tmp_path / "b-logs")
             if r["name"] == "GET /echo"}
    assert {answer.json()["id"] for answer in called.values()} <= b_ids
    assert elsewhere["b_received"] is None
    assert {c: r["b_received"] for c, r in redirected.items()} == dict.fromkeys(CLIENTS)
    assert {c: r["b_received"] for c, r in own.items()} == dict.fromkeys(CLIENTS, "callers-own")


# -- the per-client forms and the switch, from this process ---------------------------------


@pytest.fixture
def b_url(tmp_path):
    with server(SERVICES, "b", str(tmp_path / "b-logs"), cwd=tmp_path) as b:
        yield b.url


@pytest.mark.servers
def test_per_client_httpx_transports_and_requests_adapter(b_url):
    with request_id_context("per-client-id"):
        with httpx.Client(transport=RequestIdTransport(allowed_hosts=["127.0.0.1"])) as c:
            assert c.get(f"{b_url}/echo").json() == {"received": "per-client-id"}

        async def async_call() -> dict:
            transport = AsyncRequestIdTransport(allowed_hosts=["127.0.0.1"])
            async with httpx.AsyncClient(transport=transport) as client:
                return (await client.get(f"{b_url}/echo")).json()

        assert asyncio.run(async_call()) == {"received": "per-client-id"}
        session = requests.Session()
        session.mount("http://", RequestIdAdapter(allowed_hosts=["127.0.0.1"]))
        assert session.get(f"{b_url}/echo", timeout=30).json() == {"received": "per-client-id"}
        # Clients without them send nothing: the switch is off in this process.
        assert requests.get(f"{b_url}/echo", timeout=30).json() == {"received": None}


@pytest.mark.servers
def test_without_an_id_nothing_is_sent_and_the_switch_can_be_undone(b_url):
    propagate_request_id()  # the default: internal hosts, 127.0.0.1 among them
    try:
        assert httpx.get(f"{b_url}/echo").json() == {"received": None}
        with request_id_context("switched-on"):
            assert httpx.get(f"{b_url}/echo").json() == {"received": "switched-on"}
    finally:
        stop_propagating_request_id()
    with request_id_context("switched-off"):
        assert httpx.get(f"{b_url}/echo").json() == {"received": None}


@pytest.mark.servers
def test_calling_the_switch_twice_is_harmless(b_url):
    originals = (httpx.HTTPTransport.handle_request, requests.adapters.HTTPAdapter.send)
    propagate_request_id(["example.com"])
    second = propagate_request_id(["127.0.0.1"])  # replaces the settings, wraps nothing twice
    try:
        assert second.allowed_hosts == {"127.0.0.1"}
        with request_id_context("twice"):
            assert requests.get(f"{b_url}/echo", timeout=30).json() == {"received": "twice"}
    finally:
        stop_propagating_request_id()
    assert (httpx.HTTPTransport.handle_request, requests.adapters.HTTPAdapter.send) == originals


@pytest.mark.servers
def test_the_request_object_is_left_as_the_caller_built_it(b_url):
    propagate_request_id(["127.0.0.1"])
    try:
        with request_id_context("not-kept"), httpx.Client() as client:
            request = client.build_request("GET", f"{b_url}/echo")
            assert client.send(request).json() == {"received": "not-kept"}
        assert "x-request-id" not in request.headers
    finally:
        stop_propagating_request_id()


@pytest.mark.parametrize("host, internal", [
    ("localhost", True), ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.7", True),
    ("::1", True), ("billing", True), ("billing.default.svc.cluster.local", True),
    ("db.internal", True), ("api.stripe.com", False), ("8.8.8.8", False),
    ("example.com", False), ("2001:4860:4860::8888", False),
])
def test_the_default_allows_internal_hosts_only(host, internal):
    assert internal_host(host) is internal
    assert OutgoingIds().allows(host) is internal


def test_allowed_hosts_names_domains_and_every_host():
    ids = OutgoingIds(["api.example.com", ".partner.org", "10.0.0.9"])
    assert ids.allows("api.example.com") and not ids.allows("www.example.com")
    assert ids.allows("partner.org") and ids.allows("x.y.partner.org")
    assert not ids.allows("evilpartner.org") and not ids.allows("localhost")
    assert ids.allows("10.0.0.9")
    assert OutgoingIds(["*"]).allows("anything.example")


@pytest.mark.parametrize("hosts, message", [
    ("api.example.com", "allowed_hosts must be a list of host names"),
    (["https://api.example.com"], "without scheme or port"),
    (["api.example.com:8443"], "without scheme or port"),
    ([""], "each allowed host"),
])
def test_wrong_allowed_hosts_fail_at_set_up(hosts, message):
    with pytest.raises((TypeError, ValueError), match=message):
        propagate_request_id(hosts)


def test_a_wrong_header_name_fails_at_set_up():
    with pytest.raises(ValueError, match="header_name must be an HTTP header name"):
        propagate_request_id(header_name="X Request ID")
