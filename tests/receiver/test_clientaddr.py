"""Who the client is: X-Forwarded-For counts only from a trusted proxy, read from the right."""

from __future__ import annotations

import pytest

from aethermind.receiver.clientaddr import TrustedProxies
from aethermind.receiver.config import ReceiverConfig, ReceiverConfigError

PROXIES = TrustedProxies.parse(["10.0.0.0/8", "192.0.2.1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # No trusted proxy in front: the header is the client's own words, ignored.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # Through the load balancer: the address it saw.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # Two trusted hops; what the client wrote on the left is not believed.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 192.0.2.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
        # Garbage in the header: the last address a trusted hop vouched for.
        ("10.1.2.3", ["not-an-ip, 192.0.2.1"], "192.0.2.1"),
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["2001:db8::1"], "2001:db8::1"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str) -> None:
    assert PROXIES.client_address(peer, forwarded) == client


def test_without_trusted_proxies_the_header_never_counts() -> None:
    assert TrustedProxies().client_address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_trusted_proxies_come_from_the_environment_and_are_checked() -> None:
    config = ReceiverConfig.from_env({"AETHERMIND_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    with pytest.raises(ReceiverConfigError, match="not an IP address or CIDR"):
        ReceiverConfig(trusted_proxies=("lb.internal",))
