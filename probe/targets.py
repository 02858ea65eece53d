"""Targets: IP literals, host names and CIDR blocks, parsed and expanded lazily."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from probe.yamldoc import show

# --------------------------------------------------------------------------------------------
# Targets: IP literals, host names, CIDR blocks
# --------------------------------------------------------------------------------------------

MAX_BLOCK = 65536
"""The largest CIDR block accepted (an IPv4 /16, an IPv6 /112)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Target = ipaddress.IPv4Address | ipaddress.IPv6Address | Network | str

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_SCOPE = re.compile(r"[A-Za-z0-9._-]{1,15}")
"""An IPv6 zone: an interface name (at most 15 characters on Linux) or index."""


def is_host_name(text: str) -> bool:
    """A fully qualified host name: two labels at least, the last not all digits."""
    name = text[:-1] if text.endswith(".") else text
    if len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) > 1 and all(_LABEL.fullmatch(label) for label in labels) \
        and not labels[-1].isdigit()


def parse_target(text: str) -> Target:
    """An IP address, a CIDR block (at most MAX_BLOCK addresses) or a host name (kept as text).

    Raises ValueError with a message for the user.
    """
    text = text.strip()
    if "/" in text:
        return parse_block(text)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        scope = address.scope_id if isinstance(address, ipaddress.IPv6Address) else None
        if scope is not None and not _SCOPE.fullmatch(scope):
            raise ValueError(f"{show(text)}: the zone after % must be an interface name or "
                             "index (letters, digits, . _ -, at most 15)")
        return address
    if is_host_name(text):
        return text
    raise ValueError(f"{show(text)} is not an IP address, host name or CIDR block")


def parse_block(text: str) -> Network:
    """A CIDR block of at most MAX_BLOCK addresses; ValueError otherwise."""
    text = text.strip()
    try:
        block = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{show(text)} is not a CIDR block") from None
        raise ValueError(f"{show(text)} has host bits set (the block is {loose})") from None
    if block.num_addresses > MAX_BLOCK:
        raise ValueError(f"{show(text)} holds {block.num_addresses} addresses; at most "
                         f"{MAX_BLOCK} per block (an IPv4 /16, an IPv6 /112): split it")
    return block


def block_addresses(block: Network) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The probed addresses of a block: IPv4 below /31 without network and broadcast."""
    first = int(block.network_address)
    last = int(block.broadcast_address)
    if block.version == 4 and block.prefixlen < 31:
        first, last = first + 1, last - 1
    make = ipaddress.IPv4Address if block.version == 4 else ipaddress.IPv6Address
    return (make(number) for number in range(first, last + 1))


def block_size(block: Network) -> int:
    if block.version == 4 and block.prefixlen < 31:
        return block.num_addresses - 2
    return block.num_addresses


def block_holds(block: Network, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version != block.version or ip not in block or str(ip) != address:
        return False
    if block.version == 4 and block.prefixlen < 31:
        return ip not in (block.network_address, block.broadcast_address)
    return True

