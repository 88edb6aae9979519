"""The address of the client behind a request, trusting ``X-Forwarded-For`` only from proxies
the operator named (``SCANWARD_TRUSTED_PROXIES``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


_MAX_REMEMBERED_PEERS = 1024


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        # the peers are the few proxies in front of the API: parsing them costs ~2 us a request
        self._peers_trusted: dict[str, bool] = {}

    def of(self, request: web.Request) -> str:
        """The peer, or when the peer is a trusted proxy the nearest untrusted forwarded hop."""
        peer = request.remote or ""
        if not self._trusted or not self._peer_is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", ())
            for hop in header.split(",")
        ]
        for hop in reversed(hops):
            trusted = self._trust(hop)
            if trusted is None:  # not an address: what is behind it cannot be believed
                return peer
            if not trusted:
                return hop
        return peer

    def _peer_is_trusted(self, peer: str) -> bool:
        trusted = self._peers_trusted.get(peer)
        if trusted is None:
            if len(self._peers_trusted) >= _MAX_REMEMBERED_PEERS:
                self._peers_trusted.clear()
            trusted = self._peers_trusted[peer] = bool(self._trust(peer))
        return trusted

    def _trust(self, address: str) -> bool | None:
        """Whether ``address`` is a trusted proxy's; None when it is not an IP address."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return any(ip in network for network in self._trusted)
