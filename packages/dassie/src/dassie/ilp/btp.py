"""BTP 2.0 links over WebSocket (aiohttp): the ``/btp`` server side and the dialing side.

A :class:`BtpLink` carries ILP packets in both directions over one socket. It is
callback-driven, so a packet costs no task or future: an incoming Prepare goes
to the node's :data:`PrepareSink` with an :data:`Answer` callback that sends the
BtpResponse; an outgoing Prepare (:meth:`BtpLink.send_prepare`) is matched to
its answer by request id and handed to its :class:`Waiter`. When the socket
closes, every waiter still waiting gets :meth:`Waiter.on_failure`, so the node
voids its holds.

Frames queued during one turn of the event loop go out in one socket write
(:class:`FrameWriter`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
from aiohttp import WSMsgType, web

from interledger import btp
from interledger.errors import DecodeError
from interledger.packet import (
    Fulfill,
    Prepare,
    Reject,
    decode_packet,
    encode_packet,
    format_generalized_time,
)

log = logging.getLogger(__name__)

AUTH_TIMEOUT = 5.0
MAX_MESSAGE = 1 << 20

Answer = Callable[[Fulfill | Reject, bytes | None], None]
"""Called once with the answer to a Prepare, and its encoding when already known."""
PrepareSink = Callable[[str, Prepare, bytes | None, Answer], None]
"""Takes a Prepare from a peer (name, packet, its encoding if known) and answers later."""
PrepareHandler = Callable[[str, Prepare], Awaitable[Fulfill | Reject]]


class LinkClosed(ConnectionError):
    """The link went down before the answer came."""


class Waiter(Protocol):
    """What waits for the answer to one outgoing Prepare; exactly one method is called."""

    def on_response(self, response: Fulfill | Reject, raw: bytes) -> None: ...

    def on_failure(self, reason: str) -> None: ...


def _error(request_id: int, code: str, name: str) -> bytes:
    now = format_generalized_time(datetime.now(UTC))
    return btp.encode_btp(btp.BtpError(request_id, code, name, now))


_HEADER_MEDIUM = struct.Struct("!BBH")
_HEADER_LONG = struct.Struct("!BBQ")
_masks = random.Random()


def binary_frame(payload: bytes, mask: bool) -> bytes:
    """One final binary WebSocket frame (RFC 6455), masked as a client must."""
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        header = bytes((0x82, size | bit))
    elif size < 65536:
        header = _HEADER_MEDIUM.pack(0x82, 126 | bit, size)
    else:
        header = _HEADER_LONG.pack(0x82, 127 | bit, size)
    if not mask:
        return header + payload
    key = _masks.getrandbits(32).to_bytes(4, "big")
    stream = key * (size // 4 + 1)
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream[:size], "big")
    return header + key + masked.to_bytes(size, "big")


class FrameWriter:
    """Sends binary frames on an aiohttp WebSocket, one socket write per loop turn.

    Frames go straight to the connection's transport, as aiohttp's own writer
    would write them (uncompressed; masked on the client side). If this aiohttp
    does not expose its writer, each frame goes through ``send_bytes`` instead.
    A peer that leaves more than :attr:`max_buffered` bytes unread loses the
    connection (its waiting Prepares then fail as for any closed link).
    """

    max_buffered = 32 << 20
    """Bytes the socket may hold unsent; beyond that the peer is not reading: drop it."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        writer = getattr(ws, "_writer", None)
        self._transport: asyncio.Transport | None = getattr(writer, "transport", None)
        self._mask = bool(getattr(writer, "use_mask", False))
        self._frames: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._fallback: asyncio.Task[None] | None = None

    @property
    def masked(self) -> bool:
        """True on the client side of the socket, whose frames must be masked."""
        return self._mask

    def send(self, payload: bytes) -> None:
        """Queue one binary message; dropped if the socket is closing."""
        if self.ws.closed:
            return
        if not self._frames:
            self._loop.call_soon(self.flush)
        self._frames.append(payload)

    def flush(self) -> None:
        frames, self._frames = self._frames, []
        if not frames or self.ws.closed:
            return
        transport = self._transport
        if transport is None:
            self._fallback = asyncio.ensure_future(self._send_each(frames, self._fallback))
            return
        if transport.is_closing():
            return
        mask = self._mask
        transport.write(b"".join([binary_frame(f, mask) for f in frames]))
        if transport.get_write_buffer_size() > self.max_buffered:
            log.warning("BTP peer is not reading its socket: dropping the link")
            transport.abort()

    async def _send_each(self, frames: list[bytes], before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await before
        for payload in frames:
            try:
                await self.ws.send_bytes(payload)
            except (ConnectionError, RuntimeError):
                return


class BtpLink:
    """One authenticated BTP connection to a peer."""

    def __init__(
        self,
        peer: str,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        on_prepare: PrepareSink,
    ) -> None:
        self.peer = peer
        self.ws = ws
        self.on_prepare = on_prepare
        self.out = FrameWriter(ws)
        self._next_id = 1
        self._waiting: dict[int, Waiter] = {}
        self.closed = asyncio.Event()

    # -- outgoing Prepares -------------------------------------------------

    def send_prepare(self, raw: bytes, waiter: Waiter) -> int:
        """Send an encoded Prepare; its answer goes to ``waiter``. Returns the request id.

        Raises :class:`LinkClosed` if the link is already down.
        """
        if self.closed.is_set() or self.ws.closed:
            raise LinkClosed(f"link to {self.peer} is down")
        request_id = self._next_id
        self._next_id = request_id % 0xFFFFFFFF + 1
        self._waiting[request_id] = waiter
        self.out.send(btp.encode_ilp_message(request_id, raw))
        return request_id

    def forget(self, request_id: int) -> None:
        """Stop waiting for an answer (the Prepare expired)."""
        self._waiting.pop(request_id, None)

    # -- reading -------------------------------------------------------------

    async def run(self) -> None:
        """Read until the socket closes; then fail whatever is still waiting."""
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    self._receive(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self.out.send(_error(0, "F00", "BTP needs binary frames"))
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.closed.set()
            waiting, self._waiting = self._waiting, {}
            for waiter in waiting.values():
                self._tell(waiter.on_failure, f"link to {self.peer} closed")

    async def close(self) -> None:
        try:
            await self.ws.close()
        except Exception as exc:  # already gone: nothing left to close
            log.debug("closing the BTP link to %s: %s", self.peer, exc)

    def _receive(self, raw: bytes) -> None:
        common = btp.read_ilp(raw)  # the usual shape: one ILP packet, no objects built
        if common is not None:
            kind, request_id, data = common
            if kind == btp.BtpType.RESPONSE:
                self._answered(request_id, data)
            else:
                self._prepare(request_id, data)
            return
        try:
            packet = btp.decode_btp(raw)
        except DecodeError as exc:
            log.info("BTP from %s: malformed packet: %s", self.peer, exc)
            self.out.send(_error(0, "F00", f"malformed BTP packet: {exc}"))
            return
        request_id = packet.request_id
        entry = btp.find_protocol(packet.protocol_data, "ilp")
        if isinstance(packet, btp.BtpError):
            self._answered(request_id, None)
        elif isinstance(packet, btp.BtpResponse):
            self._answered(request_id, None if entry is None else entry.data)
        elif isinstance(packet, btp.BtpTransfer) or entry is None:
            self.out.send(btp.encode_btp(btp.BtpResponse(request_id)))
        else:
            self._prepare(request_id, entry.data)

    def _prepare(self, request_id: int, data: bytes) -> None:
        """An incoming Prepare: hand it to the node with a callback that answers it."""
        try:
            prepare = decode_packet(data)
        except DecodeError as exc:
            self.out.send(_error(request_id, "F00", f"malformed ILP packet: {exc}"))
            return
        if not isinstance(prepare, Prepare):
            self.out.send(_error(request_id, "F00", "expected an ILP Prepare"))
            return
        out = self.out

        def answer(response: Fulfill | Reject, encoded: bytes | None) -> None:
            if encoded is None:
                encoded = encode_packet(response)
            out.send(btp.encode_ilp_response(request_id, encoded))

        try:
            self.on_prepare(self.peer, prepare, data, answer)
        except Exception:
            log.exception("handling a Prepare from %s failed", self.peer)
            answer(Reject("T00", "", "internal error", b""), None)

    def _answered(self, request_id: int, data: bytes | None) -> None:
        """The answer to one of our Prepares (``data`` None: a BTP error, or no ILP packet)."""
        waiter = self._waiting.pop(request_id, None)
        if waiter is None:
            return
        if data is None:
            self._tell(waiter.on_failure, f"{self.peer} answered without an ILP packet")
            return
        try:
            response = decode_packet(data)
        except DecodeError as exc:
            self._tell(waiter.on_failure, f"{self.peer} sent a malformed ILP answer: {exc}")
            return
        if isinstance(response, Prepare):
            self._tell(waiter.on_failure, f"{self.peer} answered a Prepare with a Prepare")
            return
        try:
            waiter.on_response(response, data)
        except Exception:  # one packet's failure must not stop the link
            log.exception("handling an answer from %s failed", self.peer)

    def _tell(self, on_failure: Callable[[str], None], reason: str) -> None:
        try:
            on_failure(reason)
        except Exception:
            log.exception("handling a failed Prepare to %s failed", self.peer)


def match_token(tokens: dict[str, str], given: str) -> str | None:
    """The peer whose token equals ``given`` (constant-time per candidate)."""
    found = None
    for name, token in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            found = name
    return found


async def accept(
    request: web.Request, tokens: dict[str, str]
) -> tuple[str | None, web.WebSocketResponse]:
    """Upgrade ``/btp`` and run the auth exchange: ``(peer, ws)``, peer None if it failed."""
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=b"auth timeout")
        return None, ws
    if msg.type != WSMsgType.BINARY:
        await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=b"auth expected")
        return None, ws
    request_id = 0
    try:
        packet = btp.decode_btp(msg.data)
        request_id = packet.request_id
        auth = btp.parse_auth(packet)
    except DecodeError as exc:
        await ws.send_bytes(_error(request_id, "F00", f"bad auth message: {exc}"))
        await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=b"auth failed")
        return None, ws
    peer = match_token(tokens, auth.token)
    if peer is None:
        await ws.send_bytes(_error(request_id, "F00", "invalid auth token"))
        await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=b"auth failed")
        return None, ws
    await ws.send_bytes(btp.encode_btp(btp.BtpResponse(request_id)))
    return peer, ws


async def dial(
    session: aiohttp.ClientSession, url: str, token: str, username: str = ""
) -> aiohttp.ClientWebSocketResponse:
    """Connect to a peer's ``/btp`` and authenticate; raises ConnectionError on refusal."""
    ws = await session.ws_connect(url, max_msg_size=MAX_MESSAGE, heartbeat=30)
    try:
        await ws.send_bytes(btp.encode_btp(btp.auth_message(1, token, username)))
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
        if msg.type != WSMsgType.BINARY:
            raise ConnectionError(f"BTP auth to {url}: connection closed")
        answer = btp.decode_btp(msg.data)
        if not isinstance(answer, btp.BtpResponse):
            detail = answer.name if isinstance(answer, btp.BtpError) else type(answer).__name__
            raise ConnectionError(f"BTP auth to {url} refused: {detail}")
    except BaseException:
        await ws.close()
        raise
    return ws
