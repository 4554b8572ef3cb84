"""A sans-I/O ILPv4 connector: routing, per-peer rules, expiry and response checks.

The core decides; it never waits, sends or writes. An adapter asks
:meth:`Connector.route_prepare` what to do with a Prepare, makes the ledger
hold (a pending transfer, T04 when a limit refuses it), sends the outgoing
Prepare, and asks :meth:`Connector.settle` what the response means: post or void
the hold and what to answer upstream.
"""

from interledger.connector.core import (
    LOCAL,
    Connector,
    ConnectorSettings,
    Forward,
    Outcome,
    reject,
)
from interledger.connector.ledger import LedgerPort, LimitError, MemoryLedger
from interledger.connector.peers import Peer
from interledger.connector.routing import RoutingTable

__all__ = [
    "LOCAL",
    "Connector",
    "ConnectorSettings",
    "Forward",
    "LedgerPort",
    "LimitError",
    "MemoryLedger",
    "Outcome",
    "Peer",
    "RoutingTable",
    "reject",
]
