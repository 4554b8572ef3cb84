"""STREAM packets (RFC 29 section 5.2): the plaintext inside ILP packet data."""

from __future__ import annotations

from dataclasses import dataclass

from interledger.errors import DecodeError, EncodeError
from interledger.oer import UINT64_MAX, Reader, encode_length, encode_var_uint
from interledger.packet import PacketType
from interledger.stream.frames import Frame, encode_frame, read_frame

VERSION = 1


@dataclass(frozen=True, slots=True)
class StreamPacket:
    """One STREAM packet: the ILP packet type it rides in, a sequence, an amount, frames."""

    sequence: int
    packet_type: PacketType
    prepare_amount: int
    frames: tuple[Frame, ...] = ()


def encode_stream_packet(packet: StreamPacket) -> bytes:
    """Encode (without encryption)."""
    for value in (packet.sequence, packet.prepare_amount):
        if not 0 <= value <= UINT64_MAX:
            raise EncodeError(f"{value} out of uint64 range")
    count = len(packet.frames)
    count_bytes = count.to_bytes(max(1, (count.bit_length() + 7) // 8), "big")
    return b"".join(
        [
            bytes((VERSION, PacketType(packet.packet_type))),
            encode_var_uint(packet.sequence),
            encode_var_uint(packet.prepare_amount),
            encode_length(len(count_bytes)),
            count_bytes,
            *(encode_frame(frame) for frame in packet.frames),
        ]
    )


def decode_stream_packet(raw: bytes) -> StreamPacket:
    """Decode (after decryption); bytes after the frames are ignored as the RFC asks."""
    r = Reader(raw)
    version = r.read_uint8()
    if version != VERSION:
        raise DecodeError(f"unsupported STREAM version {version}")
    kind = r.read_uint8()
    try:
        packet_type = PacketType(kind)
    except ValueError:
        raise DecodeError(f"invalid STREAM packet type {kind}") from None
    sequence = r.read_var_uint()
    amount = r.read_var_uint()
    count = r.read_var_uint(limit=None)
    if count > r.remaining:  # each frame takes at least two bytes
        raise DecodeError("frame count larger than the packet")
    frames = tuple(read_frame(r) for _ in range(count))
    return StreamPacket(sequence, packet_type, amount, frames)
