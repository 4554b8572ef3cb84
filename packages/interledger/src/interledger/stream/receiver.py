"""A sans-I/O STREAM receiver: answers Prepares addressed to its connections.

A connection's ILP address is ``<base>.<account>.<token>``; its shared secret is
derived from the server secret, the account and the token, so the receiver keeps
no per-connection state to accept money. The caller credits the ledger with
:attr:`Received.amount` and only then sends the Fulfill (or sends
:attr:`Received.on_failure` if crediting fails).
"""

from __future__ import annotations

from dataclasses import dataclass

from interledger.address import has_prefix, is_valid_segment
from interledger.errors import DecodeError
from interledger.packet import ErrorCode, Fulfill, PacketType, Prepare, Reject
from interledger.stream import crypto
from interledger.stream.frames import (
    ConnectionAssetDetails,
    ConnectionClose,
    ConnectionNewAddress,
    Frame,
    StreamClose,
    StreamMoney,
)
from interledger.stream.packet import StreamPacket, decode_stream_packet, encode_stream_packet


@dataclass(frozen=True, slots=True)
class Received:
    """A Prepare the receiver would fulfill: credit ``amount`` to ``account`` first."""

    account: str
    amount: int
    fulfill: Fulfill
    on_failure: Reject


class StreamReceiver:
    """Generates connection details and judges incoming Prepares."""

    def __init__(
        self, base_address: str, server_secret: bytes, asset_code: str, asset_scale: int
    ) -> None:
        self.base_address = base_address
        self.server_secret = server_secret
        self.asset_code = asset_code
        self.asset_scale = asset_scale

    def _secret(self, account: str, token: bytes) -> bytes:
        return crypto.shared_secret_from_token(self.server_secret, account.encode() + b"/" + token)

    def connection(self, account: str, token: bytes | None = None) -> tuple[str, bytes]:
        """A new ``(destination_account, shared_secret)`` pair for ``account``."""
        if not is_valid_segment(account):
            raise ValueError(f"invalid account name {account!r}")
        token = token if token is not None else crypto.generate_token()
        address = f"{self.base_address}.{account}.{crypto.encode_token(token)}"
        return address, self._secret(account, token)

    def _reject(self, code: ErrorCode, message: str, data: bytes = b"") -> Reject:
        return Reject(code.value, self.base_address, message, data)

    def handle(self, prepare: Prepare) -> Received | Reject:
        """Judge a Prepare; a Reject needs no ledger work, a :class:`Received` does."""
        if not has_prefix(prepare.destination, self.base_address):
            return self._reject(ErrorCode.F02_UNREACHABLE, "not a STREAM address here")
        parts = prepare.destination[len(self.base_address) + 1 :].split(".")
        if len(parts) != 2:
            return self._reject(ErrorCode.F02_UNREACHABLE, "unknown STREAM connection")
        account, token_text = parts
        try:
            token = crypto.decode_token(token_text)
        except DecodeError:
            return self._reject(ErrorCode.F06_UNEXPECTED_PAYMENT, "bad connection token")
        secret = self._secret(account, token)
        try:
            request = decode_stream_packet(crypto.decrypt(secret, prepare.data))
        except DecodeError:
            return self._reject(ErrorCode.F06_UNEXPECTED_PAYMENT, "cannot decrypt STREAM data")
        if request.packet_type != PacketType.PREPARE:
            return self._reject(ErrorCode.F99_APPLICATION_ERROR, "STREAM packet type mismatch")
        frames: list[Frame] = []
        if any(isinstance(f, ConnectionNewAddress) for f in request.frames):
            frames.append(ConnectionAssetDetails(self.asset_code, self.asset_scale))
        closing = any(isinstance(f, ConnectionClose) for f in request.frames)
        if closing:
            frames.append(ConnectionClose(1, ""))

        def reply(kind: PacketType, extra: tuple[Frame, ...] = ()) -> bytes:
            packet = StreamPacket(request.sequence, kind, prepare.amount, (*frames, *extra))
            return crypto.encrypt(secret, encode_stream_packet(packet))

        fulfillment = crypto.fulfillment_for(secret, prepare.data)
        has_money = any(isinstance(f, StreamMoney) for f in request.frames)
        acceptable = (
            not closing
            and has_money
            and prepare.amount >= request.prepare_amount
            and crypto.condition_for(secret, prepare.data) == prepare.execution_condition
        )
        if not acceptable:
            return self._reject(ErrorCode.F99_APPLICATION_ERROR, "", reply(PacketType.REJECT))
        closes = tuple(
            StreamClose(f.stream_id, 1, "") for f in request.frames if isinstance(f, StreamClose)
        )
        return Received(
            account,
            prepare.amount,
            Fulfill(fulfillment, reply(PacketType.FULFILL, closes)),
            self._reject(
                ErrorCode.T00_INTERNAL_ERROR, "could not credit", reply(PacketType.REJECT)
            ),
        )
