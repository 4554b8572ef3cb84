"""The payment seam of the relay.

The ingest pipeline calls :meth:`PaymentGate.charge` exactly once per event, after
every free check has passed (size, shape, id, signature, duplicate, deletion,
older replaceable version, limits) and immediately before the event is stored
and broadcast. An event whose charge is refused is neither stored nor
broadcast, and the relay answers ``["OK", id, false, charge.message]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nostr_protocol.event import Event


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of charging for one event."""

    accepted: bool
    message: str = ""
    """The OK message when refused, e.g. ``restricted: payment required``."""
    details: dict[str, Any] = field(default_factory=dict)


class PaymentGate(Protocol):
    """Prices and collects payment for an event before it is stored."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def charge(self, event: Event) -> Charge: ...

    def health(self) -> tuple[str, dict[str, Any]]:
        """``("ok" | "disconnected" | "disabled", details)`` for ``/health``'s ``dassie_rpc``."""
        ...

    def nip11_fees(self) -> dict[str, Any] | None:
        """NIP-11 ``fees`` (``{"publication": [...]}``), or None when publishing is free."""
        ...

    def nip11_payments(self) -> dict[str, Any] | None:
        """NIP-11 ``payments``: where and how to pay (chains, factory, recipient), or None."""
        ...


class FreePublishing:
    """The gate when payments are off: every event is accepted for free."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def charge(self, event: Event) -> Charge:
        return Charge(accepted=True)

    def health(self) -> tuple[str, dict[str, Any]]:
        return "disabled", {}

    def nip11_fees(self) -> dict[str, Any] | None:
        return None

    def nip11_payments(self) -> dict[str, Any] | None:
        return None
