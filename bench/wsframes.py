"""A bare WebSocket client's framing (RFC 6455), shared by the benchmarks' lean clients.

The benchmarks build and mask every frame before the timed window and parse
what the server sends in ``data_received``, so that the client spends as little
of the shared CPU as it can. Only what a client needs: masked frames out,
unmasked server frames in, and the upgrade request.
"""

from __future__ import annotations

import base64
import os
import struct


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame with a fresh random masking key."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return header + key + masked


def take_frames(buf: bytearray) -> list[tuple[int, bool, bytes]]:
    """Remove the complete server frames from ``buf``: ``(opcode, fin, payload)`` each."""
    frames = []
    pos = 0
    size = len(buf)
    while size - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n = b1 & 0x7F
        start = pos + 2
        if n == 126:
            if size - pos < 4:
                break
            n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            start = pos + 4
        elif n == 127:
            if size - pos < 10:
                break
            n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            start = pos + 10
        if size < start + n:
            break
        frames.append((b0 & 0x0F, bool(b0 & 0x80), bytes(buf[start : start + n])))
        pos = start + n
    del buf[:pos]
    return frames


def take_messages(buf: bytearray, fragments: list[bytes]) -> tuple[list[bytes], list[bytes], bool]:
    """Remove the complete server frames from ``buf`` and sort them: the whole messages
    (continuation frames joined, ``fragments`` holding a message not yet finished), the
    pings' payloads to answer with pongs, and whether the server sent a close."""
    messages: list[bytes] = []
    pings: list[bytes] = []
    closed = False
    for opcode, fin, payload in take_frames(buf):
        if opcode == 0x9:
            pings.append(payload)
        elif opcode == 0x8:
            closed = True
        elif opcode in (0x0, 0x1, 0x2):
            fragments.append(payload)
            if fin:
                messages.append(b"".join(fragments))
                fragments.clear()
    return messages, pings, closed


def upgrade_request(host: str, port: int, path: str = "/") -> bytes:
    """The HTTP/1.1 request that opens a WebSocket on ``path``."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
