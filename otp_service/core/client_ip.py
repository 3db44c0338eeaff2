"""Which address a request really comes from, believing ``X-Forwarded-For`` only from proxies.

Every per-IP and per-subnet limit keys on this address, so it must not be something a client can
choose. The peer address (the socket's) cannot be forged; an ``X-Forwarded-For`` header can, by
anyone. The header is therefore read only when the peer is one of ``OTP_TRUSTED_PROXIES``, and
walked from the right: each trusted proxy appends the address it received the request from, so
the first hop that is not a trusted proxy is the client. Entries further left were written by the
client (or by proxies we do not know) and are ignored.

Addresses are returned in canonical text (``2001:db8::1``, leading zeros of an IPv4 address
dropped, IPv6 forms that embed an IPv4 address unwrapped to it) so one host cannot dodge its
counter by spelling its address differently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from otp_service.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: A dotted quad whose parts may carry leading zeros (``010.000.000.001``), alone or as the tail
#: of an IPv6 address (``::ffff:010.0.0.1``).
#: NAT64's well-known prefix (RFC 6052): ``64:ff9b::a.b.c.d`` is the IPv4 host ``a.b.c.d``.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_PADDED_QUAD = re.compile(r"((?:.*:)?)(\d+)\.(\d+)\.(\d+)\.(\d+)", re.ASCII)


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; host bits are ignored (``10.1.2.3/8`` → 10/8).

    :raises ValueError: an entry is not an address or a network.
    """
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


@lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """One hop as proxies write it, or ``None`` when it is not an address.

    Cached (addresses are immutable): every request parses its proxy's address, and the
    service parses the client's again when it canonicalises what the HTTP layer resolved.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443`` (some proxies append the client's port), ``fe80::1%eth0`` (zone
    dropped) and ``010.000.000.001`` (read as ``10.0.0.1``); rejects ``unknown``, obfuscated
    identifiers (RFC 7239) and anything else.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(_unpad_ipv4(text))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return embedded
        if address.scope_id is not None:
            # The zone (``%eth0``) names a local interface, not a different host.
            return ipaddress.IPv6Address(int(address))
    return address


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for, counted as that address.

    IPv4-mapped (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``), 6to4 (``2002:AABB:CCDD::/48``:
    the whole /48 belongs to the IPv4 host ``AA.BB.CC.DD``) and Teredo (``2001::/32``, the
    client's public IPv4 address, obfuscated in the last 32 bits). Without this, one IPv4 host
    would take a fresh IPv6 identity, and a 6to4 host a /48 of them, per spelling.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _unpad_ipv4(text: str) -> str:
    """``010.000.000.001`` → ``10.0.0.1``: leading zeros read as decimal, as proxies write them.

    :mod:`ipaddress` refuses such spellings (some C libraries read them as octal), and a refused
    hop would fall back to the proxy's address: one client could then take its own counter and
    the proxy's by re-spelling itself. Read as decimal, every spelling is the one address a
    client could have written plainly, so the reading gives it nothing.
    """
    match = _PADDED_QUAD.fullmatch(text)
    if match is None:
        return text
    head, *parts = match.groups()
    return head + ".".join(part.lstrip("0") or "0" for part in parts)


def forwarded_hops(headers: Iterable[str]) -> list[str]:
    """Every ``X-Forwarded-For`` value joined into one list of hops, leftmost first.

    Several header lines are one list in the order received (RFC 9110 §5.3).
    """
    return [hop.strip() for header in headers for hop in header.split(",") if hop.strip()]


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address, in canonical text.

    :param peer: the socket's peer address (``request.remote_addr``); ``None`` on a Unix socket.
    :param forwarded_for: the ``X-Forwarded-For`` header values, in the order received.
    :param proxies: networks whose forwarded addresses are believed (``OTP_TRUSTED_PROXIES``).
    :returns: the first hop from the right that is not a trusted proxy. When a trusted proxy
        forwards a malformed hop, or every hop is a trusted proxy, the nearest trusted proxy is
        the answer: a shared counter for its traffic is safer than one the client can pick.
        ``None`` only when the peer itself is unknown or malformed.
    """
    current = parse_address(peer) if peer else None
    if current is None:
        return None
    if proxies:
        for hop in reversed(forwarded_hops(forwarded_for)):
            if not _trusted(current, proxies):
                break
            previous = parse_address(hop)
            if previous is None:
                break
            current = previous
    return str(current)


def canonical_ip(text: str | None) -> str | None:
    """A caller-supplied client address in canonical text (library callers, operators' tools).

    :raises InvalidRequest: not an IP address.
    """
    if text is None:
        return None
    address = parse_address(text)
    if address is None:
        raise InvalidRequest("client_ip: expected an IPv4 or IPv6 address.", field="client_ip")
    return str(address)
