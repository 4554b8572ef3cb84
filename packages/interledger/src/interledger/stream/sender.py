"""A sans-I/O STREAM sender: splits one payment into Prepares and tracks the results.

Use :meth:`StreamSender.next_prepare` to get the next packet to send (None when
done, failed or waiting for in-flight packets), send it, and pass the response
to :meth:`StreamSender.on_response`. Amounts are in the receiver's asset (no
exchange rate: the node's links share one asset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from interledger.errors import DecodeError
from interledger.packet import (
    ErrorCode,
    Fulfill,
    PacketType,
    Prepare,
    Reject,
    decode_amount_too_large,
)
from interledger.stream import crypto
from interledger.stream.frames import ConnectionClose, ConnectionNewAddress, StreamMoney
from interledger.stream.packet import StreamPacket, decode_stream_packet, encode_stream_packet

MAX_TEMPORARY_FAILURES = 5


@dataclass(slots=True)
class _InFlight:
    amount: int
    sequence: int


class StreamSender:
    def __init__(
        self,
        destination: str,
        shared_secret: bytes,
        amount: int,
        source_address: str,
        max_packet_amount: int | None = None,
        timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.destination = destination
        self.secret = shared_secret
        self.amount = amount
        self.source_address = source_address
        self.max_packet = max_packet_amount or amount
        self.timeout = timeout
        self.delivered = 0
        self.in_flight: dict[bytes, _InFlight] = {}
        self.sequence = 0
        self.failure: str | None = None
        self._temporary_failures = 0

    @property
    def remaining(self) -> int:
        return self.amount - self.delivered - sum(p.amount for p in self.in_flight.values())

    @property
    def done(self) -> bool:
        return self.failure is not None or (self.delivered == self.amount and not self.in_flight)

    def next_prepare(self, now: datetime) -> Prepare | None:
        """The next Prepare to send, or None."""
        if self.failure is not None or self.remaining <= 0:
            return None
        amount = min(self.remaining, self.max_packet)
        self.sequence += 1
        frames: tuple[ConnectionNewAddress | StreamMoney, ...] = (StreamMoney(1, 1),)
        if self.sequence == 1:
            frames = (ConnectionNewAddress(self.source_address), *frames)
        plain = StreamPacket(self.sequence, PacketType.PREPARE, amount, frames)
        data = crypto.encrypt(self.secret, encode_stream_packet(plain))
        condition = crypto.condition_for(self.secret, data)
        self.in_flight[condition] = _InFlight(amount, self.sequence)
        return Prepare(amount, now + self.timeout, condition, self.destination, data)

    def on_response(self, prepare: Prepare, response: Fulfill | Reject) -> None:
        """Account for the answer to ``prepare``."""
        sent = self.in_flight.pop(prepare.execution_condition, None)
        if sent is None:
            return
        if isinstance(response, Fulfill):
            self.delivered += sent.amount
            self._temporary_failures = 0
            return
        if response.code == ErrorCode.F08_AMOUNT_TOO_LARGE:
            try:
                info = decode_amount_too_large(response.data)
                # Scale to what the rejecting hop would accept of this packet.
                allowed = sent.amount * info.maximum_amount // max(info.amount_received, 1)
            except DecodeError:
                allowed = sent.amount // 2
            if allowed <= 0:
                self.failure = "F08: the path cannot carry any amount"
            else:
                self.max_packet = min(self.max_packet, allowed)
            return
        if response.code.startswith("T") or response.code == ErrorCode.R00_TRANSFER_TIMED_OUT:
            self._temporary_failures += 1
            if self._temporary_failures > MAX_TEMPORARY_FAILURES:
                self.failure = f"{response.code}: {response.message}"
            return
        detail = response.message
        if response.code == ErrorCode.F99_APPLICATION_ERROR and response.data:
            try:
                reply = decode_stream_packet(crypto.decrypt(self.secret, response.data))
                if any(isinstance(f, ConnectionClose) for f in reply.frames):
                    detail = "receiver closed the connection"
                else:
                    detail = "receiver refused the packet"
            except DecodeError:
                detail = "undecryptable reject from receiver"
        self.failure = f"{response.code}: {detail}"

    def fail(self, reason: str) -> None:
        self.failure = reason
