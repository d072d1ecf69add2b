"""Network address helpers shared by the collector and the connectors."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True if ``host`` (a name, an IP address, or a bracketed IPv6 address) is loopback.

    Only the name ``localhost`` counts among names: any other name could resolve anywhere.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
