"""Who the client is, for throttling and logs: the TCP peer, unless the peer is a proxy the
operator trusts (``serve --trusted-proxy CIDR``), in which case ``X-Forwarded-For`` says.

From any other peer ``X-Forwarded-For`` is ignored: a client could write anything there. The
header is read from the right (each proxy appends the address it saw), skipping trusted
proxies; the first address that is not one is the client. Only that part of the header can
be trusted: everything left of it was written by the client itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT = "unknown"
_MAX_HOPS = 16
"""Addresses of X-Forwarded-For read at most: the chain of real proxies is short."""


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> TrustedProxies:
        """From ``10.0.0.0/8``-style strings (a bare address is a /32 or /128); a bad one
        raises ``ValueError`` (the config validated them already)."""
        return cls(tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs))

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address given the TCP ``peer`` and every ``X-Forwarded-For`` header
        value of the request, in order."""
        if peer is None:
            return UNKNOWN_CLIENT
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops[-_MAX_HOPS:]):
            if not hop:
                continue
            try:
                client = str(ipaddress.ip_address(hop))
            except ValueError:
                return client  # garbage where an address should be: stop at the last good one
            if not self.trusts(client):
                return client
        return client
