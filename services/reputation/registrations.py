"""Registrations from one client address, as pure functions (docs/integrity.md,
"Registrations from one address").

The gateway's rate limit bounds how fast one address registers agents; this
bounds what they weigh. An address that registered more than `free` agents
within the window shares a probation weight among the rest: the n-th agent
(n > free) weighs `free / n` of the probation weight until it is trusted. A
swarm of 500 agents from one machine then weighs as about 18 agents on
probation, not 500, whatever the rate limit was raised to, and an operator
running a few agents from one host is not affected. Trust (age and activity
spread over days) lifts it, as it lifts probation.

The address is the one the gateway took the client's to be (the peer, or
the trusted X-Forwarded-For hop), sent in CLIENT_ADDRESS_HEADER. IPv6
addresses count per /64, the block one host is usually given, as the rate
limits do (a client given a /56 or /48 can spread over 256 or 65,536 of
them, as it can over the rate limits' buckets). Addresses in the exempt networks (by default loopback: a harness
or a proxy the gateway was not told about, where every client would share
one address) and calls without the header (another service) are not
counted. Only a keyed hash of the address is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from services.common.config import ReputationSettings
from services.common.credentials import CLIENT_ADDRESS_KEY
from services.common.errors import ConfigError

# Set by the gateway on every request it forwards, over any value the client sent.
CLIENT_ADDRESS_HEADER: Final = CLIENT_ADDRESS_KEY
# Bytes of the HMAC kept: plenty to tell addresses apart. What protects the
# addresses is the key: without it the stored hashes cannot be tested
# against guesses (with it, every IPv4 address can be).
_KEY_BYTES = 16
# IPv4 clients reached through NAT64 (RFC 6052's well-known prefix) are
# counted by their IPv4 address, not all as one /64.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def crowd_share(crowd: int, free: int) -> float:
    """The part of the probation weight the `crowd`-th agent registered from
    one address within the window keeps."""
    return 1.0 if crowd <= free else free / crowd


def networks(spec: str) -> tuple[Network, ...]:
    """'127.0.0.0/8, ::1/128' -> the networks (ValueError names a bad one)."""
    found = []
    for part in spec.split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a network (as 127.0.0.0/8 or ::1/128)") from None
    return tuple(found)


@dataclass(frozen=True)
class AddressCounting:
    window: timedelta
    exempt: tuple[Network, ...]
    hash_key: bytes

    @classmethod
    def from_settings(cls, settings: ReputationSettings) -> AddressCounting:
        try:
            exempt = networks(settings.registration_crowd_exempt)
        except ValueError as exc:
            raise ConfigError(f"AIMUSICSTORE_REGISTRATION_CROWD_EXEMPT: {exc}") from None
        try:
            window = timedelta(hours=settings.registration_crowd_window_h)
        except OverflowError:
            raise ConfigError("AIMUSICSTORE_REGISTRATION_CROWD_WINDOW_H is too large (hours)") from None
        return cls(
            window=window,
            exempt=exempt,
            hash_key=(settings.address_hash_key or "address-hash:" + settings.admin_key).encode(),
        )

    def key(self, client_address: str | None) -> bytes | None:
        """What is stored of a registration's address, to count the others
        from it; None when the address is unknown, malformed or exempt (the
        registration is then counted alone)."""
        if not client_address:
            return None
        try:
            address = ipaddress.ip_address(client_address.strip().removeprefix("[").removesuffix("]"))
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            elif address in _NAT64:
                address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if any(address in network for network in self.exempt):
            return None
        block = ipaddress.ip_network(f"{address}/{64 if address.version == 6 else 32}", strict=False)
        return hmac.new(self.hash_key, str(block).encode(), hashlib.sha256).digest()[:_KEY_BYTES]
