"""Which peers are trusted proxies: they may tell us about the client before them (X-Forwarded-*, Forwarded,
X-Request-ID). The server (`forwarded_allow_ips`) and the proxy (`trusted_proxies`) ask the same object."""

from __future__ import annotations

import ipaddress


class ProxyTrust:
    """'*' trusts everyone; otherwise addresses inside the listed networks ('10.0.0.0/8', '127.0.0.1')."""

    def __init__(self, allowed: tuple[str, ...]):
        self.everyone = "*" in allowed
        networks = [ipaddress.ip_network(item, strict=False) for item in allowed if item != "*"]
        self.networks = [] if self.everyone else networks  # parsed all the same: a bad entry is an error
        self._known: dict[str, bool] = {}  # parsing an address per request showed up in profiles

    def trusts(self, address: str, unix: bool = False) -> bool:
        """True for a listed address, and for a unix-socket peer when the caller says so (only local users
        reach a unix socket; the server counts them as trusted, the proxy does not)."""
        if not self.networks:  # nobody listed, or '*' (it leaves no networks to look in)
            return self.everyone or unix
        if unix:
            return True
        known = self._known.get(address)
        if known is None:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(parsed in network for network in self.networks)
            if len(self._known) > 4096:
                self._known.clear()
            self._known[address] = known
        return known
