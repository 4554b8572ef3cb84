"""Static routes with longest-prefix match on whole address segments."""

from __future__ import annotations

from interledger.address import has_prefix


class RoutingTable:
    """Maps address prefixes to next hops (peer names)."""

    def __init__(self) -> None:
        self._routes: dict[str, str] = {}

    def add(self, prefix: str, next_hop: str) -> None:
        self._routes[prefix] = next_hop

    def remove(self, prefix: str) -> None:
        self._routes.pop(prefix, None)

    def lookup(self, destination: str) -> str | None:
        """The next hop of the longest prefix of ``destination``, or None."""
        best: str | None = None
        for prefix in self._routes:
            if has_prefix(destination, prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self._routes[best]

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._routes.items())
