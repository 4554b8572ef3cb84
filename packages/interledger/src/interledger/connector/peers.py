"""Per-peer settings the connector enforces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """A directly connected node.

    ``account`` is its ledger account; ``max_packet_amount`` bounds one Prepare
    (F08 above it); ``credit_limit`` is how much it may owe the node in unsettled
    packets (the ledger enforces it: T04 when a hold would exceed it).
    """

    name: str
    account: str
    max_packet_amount: int | None = None
    credit_limit: int | None = None
