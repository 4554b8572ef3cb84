"""Static routes with longest-prefix match on whole address segments."""

from __future__ import annotations


class RoutingTable:
    """Maps address prefixes to next hops (peer names)."""

    def __init__(self) -> None:
        self._routes: dict[str, str] = {}

    def add(self, prefix: str, next_hop: str) -> None:
        self._routes[prefix] = next_hop

    def remove(self, prefix: str) -> None:
        self._routes.pop(prefix, None)

    def lookup(self, destination: str) -> str | None:
        """The next hop of the longest prefix of ``destination``, or None.

        Tries ``destination`` and then each shorter whole-segment prefix of it: one
        dictionary lookup per segment, however many routes there are.
        """
        routes = self._routes
        prefix = destination
        while True:
            hop = routes.get(prefix)
            if hop is not None:
                return hop
            cut = prefix.rfind(".")
            if cut < 0:
                return None
            prefix = prefix[:cut]

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._routes.items())
