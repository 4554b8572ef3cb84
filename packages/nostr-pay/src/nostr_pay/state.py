"""The client's channel state: per (chain, relay address), the channel and its last claim.

Kept in ``<home>/channels.json``, rewritten atomically under an exclusive lock so
that successive (or concurrent) runs keep counting up. :class:`ChannelState` is a
pure value; :class:`StateFile` is the small file adapter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .wallet import write_private


class StateError(Exception):
    """The state file is corrupt."""


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One channel as the sender knows it. Amounts in base units."""

    chain_id: int
    channel_id: str
    sender: str
    recipient: str
    currency: str
    deposit: int
    expiration: int
    claim_amount: int = 0
    """The highest cumulative amount the relay accepted."""
    nonce: int = 0
    """The highest nonce ever signed (accepted or not)."""

    def next_claim(self, price: int) -> tuple[int, int]:
        """(claimAmount, nonce) for an event costing ``price``."""
        return self.claim_amount + price, self.nonce + 1

    def signed(self, nonce: int) -> ChannelState:
        """After signing ``nonce`` (even if the relay refuses it, nonces only go up)."""
        return replace(self, nonce=max(self.nonce, nonce))

    def accepted(self, claim_amount: int, nonce: int) -> ChannelState:
        return replace(
            self, claim_amount=max(self.claim_amount, claim_amount), nonce=max(self.nonce, nonce)
        )

    @property
    def remaining(self) -> int:
        return self.deposit - self.claim_amount

    @staticmethod
    def key_for(chain_id: int, recipient: str, sender: str) -> str:
        return f"{chain_id}:{recipient.lower()}:{sender.lower()}"

    @property
    def key(self) -> str:
        return self.key_for(self.chain_id, self.recipient, self.sender)


class StateFile:
    """``channels.json``: read, and update atomically under ``channels.json.lock``."""

    def __init__(self, home: Path) -> None:
        self.path = home / "channels.json"
        self.lock_path = home / "channels.json.lock"

    def load(self) -> dict[str, ChannelState]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            return {key: ChannelState(**value) for key, value in raw["channels"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path}: corrupt channel state ({exc})") from None

    def save(self, channels: dict[str, ChannelState]) -> None:
        body = {"channels": {key: asdict(state) for key, state in sorted(channels.items())}}
        write_private(self.path, json.dumps(body, indent=2).encode())

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, ChannelState]]:
        """Hold the lock; yields the channels, saved on exit if no exception."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                channels = self.load()
                yield channels
                self.save(channels)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
