"""Which address a scan is attributed to: the peer, or a forwarded hop behind trusted proxies."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from ingest.http.client_address import ClientAddress


class _Transport:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self._peer, 40000) if name == "peername" else default


def _request(peer: str, *forwarded: str) -> web.Request:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    return make_mocked_request("POST", "/v1/scans", headers=headers, transport=_Transport(peer))


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ((), "10.0.0.2", ["203.0.113.9"], "10.0.0.2"),  # no proxy is trusted
        (("10.0.0.0/8",), "192.0.2.1", ["203.0.113.9"], "192.0.2.1"),  # the peer is no proxy
        (("10.0.0.0/8",), "10.0.0.2", ["203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        (("10.0.0.0/8",), "10.0.0.2", ["198.51.100.4", "203.0.113.9"], "203.0.113.9"),
        (("10.0.0.0/8",), "10.0.0.2", ["198.51.100.4, not-an-ip, 10.0.0.7"], "10.0.0.2"),
        (("10.0.0.0/8",), "10.0.0.2", ["10.0.0.7"], "10.0.0.2"),  # only proxies: the peer
        (("2001:db8::/32",), "2001:db8::1", ["2001:db9::5, 2001:db8::9"], "2001:db9::5"),
    ],
)
def test_the_nearest_untrusted_hop_behind_trusted_proxies_is_the_client(
    trusted: tuple[str, ...], peer: str, forwarded: list[str], expected: str
) -> None:
    assert ClientAddress(trusted).of(_request(peer, *forwarded)) == expected


def test_remembered_peers_do_not_change_the_answer() -> None:
    addresses = ClientAddress(["10.0.0.0/8"])
    for _ in range(3):
        assert addresses.of(_request("10.0.0.2", "203.0.113.9")) == "203.0.113.9"
        assert addresses.of(_request("192.0.2.1", "203.0.113.9")) == "192.0.2.1"
