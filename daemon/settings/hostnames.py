"""What a host is, for the settings: an IP address, or a host name as RFC 1123 spells it."""

from __future__ import annotations

import ipaddress
import re

# A host name: dot-separated labels of letters, digits and hyphens (RFC 1123), 1-63 characters,
# not starting or ending with a hyphen; `_` is allowed too, as Docker service names use it.
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
# An IPv6 zone, as in fe80::1%eth0: an interface name.
IPV6_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def is_host(value: str) -> bool:
    """An IP address or a host name."""
    return _is_ip(value) or _is_host_name(value)


def _is_ip(value: str) -> bool:
    address, zone = value.split("%", 1) if "%" in value else (value, None)
    if zone is not None and not (":" in address and IPV6_ZONE.fullmatch(zone)):
        return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _is_host_name(value: str) -> bool:
    name = value[:-1] if value.endswith(".") else value  # a fully qualified name may end with a dot
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # RFC 1123 2.1: a name never looks like a (bad) dotted-decimal address such as 256.1.1.1 or 1.2.3.
    return all(HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()
