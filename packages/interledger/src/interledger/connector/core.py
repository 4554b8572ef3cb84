"""The connector's decisions for Prepare packets and their responses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from interledger.address import has_prefix
from interledger.condition import fulfills
from interledger.connector.peers import Peer
from interledger.connector.routing import RoutingTable
from interledger.packet import (
    AmountTooLarge,
    ErrorCode,
    Fulfill,
    Prepare,
    Reject,
    encode_amount_too_large,
)

LOCAL = "self"
"""The next hop for packets the node itself receives."""


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    address: str
    min_expiry_window: timedelta = timedelta(seconds=1)
    """Time kept back from the incoming expiry so the response can travel back."""
    max_hold_time: timedelta = timedelta(seconds=30)
    """The longest the node lets an outgoing Prepare stay pending."""


@dataclass(frozen=True, slots=True)
class Forward:
    """Where a Prepare goes and what the ledger must hold for it."""

    source: str
    next_hop: str
    prepare: Prepare
    """The outgoing Prepare (same condition, shortened expiry)."""
    incoming_expires_at: datetime
    debit: str
    credit: str
    """The ledger accounts of the hold: debit the source, credit the next hop."""

    @property
    def amount(self) -> int:
        return self.prepare.amount


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a response means: whether to post the hold, and the packet to send back."""

    post: bool
    response: Fulfill | Reject


def reject(code: ErrorCode, address: str, message: str, data: bytes = b"") -> Reject:
    return Reject(code.value, address, message, data)


class Connector:
    """Routing and per-hop rules; holds no I/O and no clock."""

    def __init__(
        self,
        settings: ConnectorSettings,
        routes: RoutingTable | None = None,
        peers: dict[str, Peer] | None = None,
        local_account: str = "connector/local",
    ) -> None:
        self.settings = settings
        self.routes = routes or RoutingTable()
        self.peers: dict[str, Peer] = dict(peers or {})
        self.local_account = local_account

    @property
    def address(self) -> str:
        return self.settings.address

    def add_peer(self, peer: Peer, prefixes: tuple[str, ...] = ()) -> None:
        self.peers[peer.name] = peer
        for prefix in prefixes:
            self.routes.add(prefix, peer.name)

    def _reject(self, code: ErrorCode, message: str, data: bytes = b"") -> Reject:
        return reject(code, self.address, message, data)

    def account_of(self, hop: str) -> str:
        if hop == LOCAL:
            return self.local_account
        return self.peers[hop].account

    def route_prepare(self, source: str, prepare: Prepare, now: datetime) -> Forward | Reject:
        """Decide where a Prepare from ``source`` (a peer name or LOCAL) goes, or reject it."""
        src = self.peers.get(source)
        if source != LOCAL and src is None:
            return self._reject(ErrorCode.F00_BAD_REQUEST, f"unknown peer {source}")
        too_large = self._check_amount(src, prepare.amount)
        if too_large is not None:
            return too_large
        if prepare.expires_at <= now:
            return self._reject(ErrorCode.R00_TRANSFER_TIMED_OUT, "packet expired")
        if has_prefix(prepare.destination, self.address):
            next_hop = LOCAL
        else:
            found = self.routes.lookup(prepare.destination)
            if found is None:
                return self._reject(ErrorCode.F02_UNREACHABLE, f"no route to {prepare.destination}")
            next_hop = found
        if next_hop == source:
            return self._reject(ErrorCode.F02_UNREACHABLE, "route loops back to the sender")
        if next_hop != LOCAL:
            if next_hop not in self.peers:
                return self._reject(
                    ErrorCode.F02_UNREACHABLE, f"next hop {next_hop} not configured"
                )
            too_large = self._check_amount(self.peers[next_hop], prepare.amount)
            if too_large is not None:
                return too_large
        expires_at = prepare.expires_at
        if next_hop != LOCAL:
            expires_at = min(
                prepare.expires_at - self.settings.min_expiry_window,
                now + self.settings.max_hold_time,
            )
            if expires_at <= now:
                return self._reject(
                    ErrorCode.R02_INSUFFICIENT_TIMEOUT, "not enough time left to forward"
                )
        outgoing = Prepare(
            prepare.amount,
            expires_at,
            prepare.execution_condition,
            prepare.destination,
            prepare.data,
        )
        return Forward(
            source,
            next_hop,
            outgoing,
            prepare.expires_at,
            debit=self.account_of(source),
            credit=self.account_of(next_hop),
        )

    def _check_amount(self, peer: Peer | None, amount: int) -> Reject | None:
        if peer is None or peer.max_packet_amount is None or amount <= peer.max_packet_amount:
            return None
        data = encode_amount_too_large(AmountTooLarge(amount, peer.max_packet_amount))
        return self._reject(ErrorCode.F08_AMOUNT_TOO_LARGE, "packet amount too large", data)

    def limit_reject(self, forward: Forward) -> Reject:
        """The answer when the ledger refuses the hold."""
        return self._reject(
            ErrorCode.T04_INSUFFICIENT_LIQUIDITY, f"balance limit reached on {forward.source}"
        )

    def settle(self, forward: Forward, response: Fulfill | Reject, now: datetime) -> Outcome:
        """Judge the next hop's answer: a Fulfill counts only if valid and in time."""
        if isinstance(response, Reject):
            return Outcome(False, response)
        if now >= forward.prepare.expires_at:
            return Outcome(
                False, self._reject(ErrorCode.R00_TRANSFER_TIMED_OUT, "fulfillment arrived late")
            )
        if not fulfills(response.fulfillment, forward.prepare.execution_condition):
            return Outcome(
                False,
                self._reject(ErrorCode.F05_WRONG_CONDITION, "fulfillment does not match"),
            )
        return Outcome(True, response)

    def expired(self, forward: Forward) -> Reject:
        """The answer when no response came before the outgoing expiry."""
        return self._reject(ErrorCode.R00_TRANSFER_TIMED_OUT, "no response before expiry")

    def unreachable(self, forward: Forward, reason: str) -> Reject:
        """The answer when the next hop could not be reached or dropped."""
        return self._reject(ErrorCode.T01_PEER_UNREACHABLE, reason)
