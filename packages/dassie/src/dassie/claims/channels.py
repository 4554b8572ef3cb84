"""Where the node learns channels: the :class:`ChannelSource` interface.

One source per enabled chain. The web3 implementation lives in
:mod:`dassie.settlement.evm`; :class:`InMemoryChannelSource` serves tests and
benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel as the contract's ``getChannel`` reports it, plus where it lives."""

    chain: str
    channel_id: str
    """``0x`` + 64 lowercase hex."""
    sender: str
    recipient: str
    token: str
    currency: str | None
    """The channel asset's code on its chain; None when the node does not price it."""
    deposit: int
    highest_nonce: int
    expiration: int
    closed: bool

    def status(self, now: float, margin: int) -> str:
        if self.closed:
            return "closed"
        if now >= self.expiration:
            return "expired"
        if now >= self.expiration - margin:
            return "expiring"
        return "open"

    def to_json(self, now: float, margin: int) -> dict[str, object]:
        return {
            "chain": self.chain,
            "channelId": self.channel_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "token": self.token,
            "currency": self.currency,
            "deposit": str(self.deposit),
            "expiration": self.expiration,
            "status": self.status(now, margin),
        }

    def closed_copy(self) -> ChannelState:
        return replace(self, closed=True)


class ChainUnavailable(RuntimeError):
    """The chain's endpoint could not answer."""


class ChannelSource(Protocol):
    """Looks channels up on one chain."""

    @property
    def name(self) -> str:
        """The chain's name (``LOCAL``, ``BASE``, ...)."""
        ...

    @property
    def relay_address(self) -> str:
        """The node's (checksummed) address on this chain: the recipient it accepts."""
        ...

    async def get_channel(self, channel_id: str) -> ChannelState | None:
        """The channel, or None if unknown on this chain; raises ChainUnavailable."""
        ...


class InMemoryChannelSource:
    """A chain held in a dict (tests, benchmarks)."""

    def __init__(self, name: str, relay_address: str) -> None:
        self._name = name
        self._relay_address = relay_address
        self.channels: dict[str, ChannelState] = {}
        self.lookups = 0
        self.unavailable: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def relay_address(self) -> str:
        return self._relay_address

    def add(self, channel: ChannelState) -> None:
        self.channels[channel.channel_id] = channel

    async def get_channel(self, channel_id: str) -> ChannelState | None:
        self.lookups += 1
        if self.unavailable is not None:
            raise ChainUnavailable(self.unavailable)
        return self.channels.get(channel_id)
