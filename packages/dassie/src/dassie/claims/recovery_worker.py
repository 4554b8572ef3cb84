"""The signer-recovery worker process and its wire format.

Run as ``python -m dassie.claims.recovery_worker``; :mod:`.recovery` starts it.
It reads batches on stdin and answers each on stdout, in order:

- request: ``count`` (4 bytes, big-endian), then ``count`` items of
  :data:`ITEM_SIZE` bytes: the 96-byte claim message
  (:func:`payment_channel.claim.claim_message`; the worker hashes it, which spares
  the node two Keccak-256 calls per claim) and the 65-byte ``r || s || recid``
  signature (from :func:`payment_channel.claim.split_signature`);
- answer: ``count`` items of :data:`ANSWER_SIZE` bytes: status 0 and the signer's
  20-byte address, or status 1 (does not recover) and 20 zero bytes.

The worker exits when stdin closes, which also happens when the node dies, so a
killed node leaves no worker behind. The framing functions are pure; only
:func:`main` does I/O.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable

from payment_channel._recover import Recover, single_thread_recoverer
from payment_channel.claim import InvalidSignature, message_hash, recover_address
from payment_channel.keccak import keccak256

MESSAGE_SIZE = 96
SIGNATURE_SIZE = 65
ITEM_SIZE = MESSAGE_SIZE + SIGNATURE_SIZE
ANSWER_SIZE = 21
HEADER_SIZE = 4
MAX_BATCH = 1 << 16
_FAILED = b"\x01" + bytes(20)


class ProtocolError(ValueError):
    """A frame that is not of this wire format."""


def encode_batch(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """One request frame for ``(claim_message, compact_signature)`` pairs."""
    parts = [b""]
    for message, compact in items:
        if len(message) != MESSAGE_SIZE or len(compact) != SIGNATURE_SIZE:
            raise ProtocolError("an item is a 96-byte claim message and a 65-byte signature")
        parts.append(message)
        parts.append(compact)
    count = (len(parts) - 1) // 2
    if count > MAX_BATCH:
        raise ProtocolError(f"a batch holds at most {MAX_BATCH} items")
    parts[0] = count.to_bytes(HEADER_SIZE, "big")
    return b"".join(parts)


def answer_batch(body: bytes, recover: Recover | None = None) -> bytes:
    """Recover every item of a request body (without its header): the answer frame.

    ``recover`` (a :func:`~payment_channel._recover.single_thread_recoverer`, for the
    worker's one thread) replaces :func:`~payment_channel.claim.recover_address`'s
    public-key recovery; the result is the same."""
    if len(body) % ITEM_SIZE:
        raise ProtocolError("a request body is a whole number of items")
    out = []
    if recover is None:
        for start in range(0, len(body), ITEM_SIZE):
            middle = start + MESSAGE_SIZE
            signed = message_hash(body[start:middle])
            try:
                out.append(b"\x00" + recover_address(signed, body[middle : start + ITEM_SIZE]))
            except InvalidSignature:
                out.append(_FAILED)
        return b"".join(out)
    for start in range(0, len(body), ITEM_SIZE):
        middle = start + MESSAGE_SIZE
        compact = body[middle : start + ITEM_SIZE]
        public = recover(message_hash(body[start:middle]), compact)
        out.append(_FAILED if public is None else b"\x00" + keccak256(public)[12:])
    return b"".join(out)


def decode_answers(data: bytes) -> list[bytes | None]:
    """The signers of an answer frame: 20-byte addresses, None where recovery failed."""
    if len(data) % ANSWER_SIZE:
        raise ProtocolError("an answer is a whole number of 21-byte items")
    return [
        data[i + 1 : i + ANSWER_SIZE] if data[i] == 0 else None
        for i in range(0, len(data), ANSWER_SIZE)
    ]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> int:
    """Serve batches from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    recover = single_thread_recoverer()
    while True:
        header = _read_exactly(stdin, HEADER_SIZE)
        if header is None:
            return 0
        count = int.from_bytes(header, "big")
        if count > MAX_BATCH:
            print("recovery worker: bad frame", file=sys.stderr)
            return 1
        body = _read_exactly(stdin, count * ITEM_SIZE)
        if body is None:
            return 0
        try:
            _write_all(stdout, answer_batch(body, recover))
        except BrokenPipeError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
