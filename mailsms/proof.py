"""Which proof of the sender an allow-list entry requires, and whether a
session supplies it (pure core: no I/O).

Three proofs exist, from weakest to strongest:

``trusted-relay``
    The connection comes from ``MAILSMS_TRUSTED_NETWORKS`` (our own relays,
    or the host itself).  Nothing about the message is checked.
``dkim``
    The From domain is proven by a DKIM signature or an SPF pass aligned
    with it in the sense of DMARC (RFC 6376, RFC 7208, RFC 7489), checked by
    :func:`mailsms.trust.prove_sender`.
``smtp-auth``
    The session authenticated (RFC 4954, only under TLS) as an identity
    allowed to send for the From address: the identity is that address, or
    the ``@domain`` entry of its domain.

Each registered entry names the *weakest proof it accepts* (its ``policy``;
unset = ``MAILSMS_SENDER_POLICY``).  A stronger proof always satisfies a
weaker policy: an AUTH session satisfies every policy, a DKIM proof
satisfies ``dkim`` and ``trusted-relay``.

The trusted-network rule (so a local trial works out of the box): a
connection from a trusted network satisfies

* an entry whose policy is explicitly ``trusted-relay``, and
* an entry with *no explicit policy* (it follows the global default),

but never an entry whose policy was explicitly set to ``dkim`` or
``smtp-auth``: an operator who asked for proof gets proof, whatever the
network.  With the defaults (``127.0.0.0/8,::1``) this trusts only
processes on the gateway's own host; set ``MAILSMS_TRUSTED_NETWORKS=""``
when a TCP proxy on the host forwards outside connections to the listener.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

SenderPolicy = Literal["dkim", "smtp-auth", "trusted-relay"]
POLICIES: tuple[SenderPolicy, ...] = ("dkim", "smtp-auth", "trusted-relay")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_STRENGTH: dict[str, int] = {"trusted-relay": 0, "dkim": 1, "smtp-auth": 2}


def parse_policy(value: str) -> SenderPolicy:
    """``value`` as a policy name; ValueError naming the choices otherwise."""
    for policy in POLICIES:
        if value.strip().lower() == policy:
            return policy
    raise ValueError(f"unknown sender policy {value!r}: choose one of {', '.join(POLICIES)}")


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated networks or addresses (``10.0.0.0/8,::1``); empty
    text trusts nothing.  ValueError names the bad item."""
    networks: list[Network] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network or address") from None
    return tuple(networks)


def in_networks(address: str | None, networks: Iterable[Network]) -> bool:
    """True when the peer ``address`` is inside one of ``networks``.

    An IPv4-mapped IPv6 peer (``::ffff:127.0.0.1``, what a dual-stack socket
    reports) is compared as the IPv4 address it is.
    """
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def required_proof(
    entry_policy: str | None, default_policy: SenderPolicy, trusted_peer: bool
) -> SenderPolicy | None:
    """The proof still needed for mail admitted by an entry, or None when the
    allow-list alone suffices (the trusted-network rule in the module doc)."""
    effective = entry_policy or default_policy
    if trusted_peer and (entry_policy is None or effective == "trusted-relay"):
        return None
    if effective == "trusted-relay":
        # Not from a trusted network: the next weakest proof is required.
        return "dkim"
    return parse_policy(effective)


def satisfies(proof: SenderPolicy, required: SenderPolicy) -> bool:
    """A proof satisfies every policy at most as strong as itself."""
    return _STRENGTH[proof] >= _STRENGTH[required]


def may_send_as(identity: str, address: str) -> bool:
    """An authenticated identity (an entry) may send as ``address`` when it is
    that address or the ``@domain`` entry of its domain."""
    key = address.strip().strip("<>").lower().rstrip(".")
    _, at, domain = key.rpartition("@")
    if not at or not domain:
        return False
    return identity == key or identity == f"@{domain}"
