"""BTP 2.0 links over WebSocket (aiohttp): the ``/btp`` server side and the dialing side.

A :class:`BtpLink` carries ILP packets in both directions over one socket: it
sends Prepares and waits for their answers by request id, and hands incoming
Prepares to the node. When the socket closes, every Prepare still waiting fails
with :class:`LinkClosed` so the node voids its holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

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

PrepareHandler = Callable[[str, Prepare], Awaitable[Fulfill | Reject]]
AUTH_TIMEOUT = 5.0
MAX_MESSAGE = 1 << 20


class LinkClosed(ConnectionError):
    """The link went down before the answer came."""


def _ilp_entry(packet: bytes) -> tuple[btp.ProtocolData, ...]:
    return (btp.ProtocolData("ilp", btp.ContentType.OCTET_STREAM, packet),)


def _error(request_id: int, code: str, name: str) -> bytes:
    now = format_generalized_time(datetime.now(UTC))
    return btp.encode_btp(btp.BtpError(request_id, code, name, now))


class BtpLink:
    """One authenticated BTP connection to a peer."""

    def __init__(
        self,
        peer: str,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        on_prepare: PrepareHandler,
    ) -> None:
        self.peer = peer
        self.ws = ws
        self.on_prepare = on_prepare
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[Fulfill | Reject]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        """Incoming Prepares being handled; they finish even if the socket closes."""
        self.closed = asyncio.Event()

    async def send(self, prepare: Prepare) -> Fulfill | Reject:
        """Send a Prepare and wait for its Fulfill or Reject (raises LinkClosed)."""
        if self.closed.is_set():
            raise LinkClosed(f"link to {self.peer} is down")
        request_id = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        future: asyncio.Future[Fulfill | Reject] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            message = btp.BtpMessage(request_id, _ilp_entry(encode_packet(prepare)))
            try:
                await self.ws.send_bytes(btp.encode_btp(message))
            except (ConnectionError, RuntimeError) as exc:
                raise LinkClosed(f"link to {self.peer} is down: {exc}") from None
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def run(self) -> None:
        """Read until the socket closes; then fail whatever is still waiting."""
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    await self._receive(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self.ws.send_bytes(_error(0, "F00", "BTP needs binary frames"))
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(LinkClosed(f"link to {self.peer} closed"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def _receive(self, raw: bytes) -> None:
        try:
            packet = btp.decode_btp(raw)
        except DecodeError as exc:
            log.info("BTP from %s: malformed packet: %s", self.peer, exc)
            await self.ws.send_bytes(_error(0, "F00", f"malformed BTP packet: {exc}"))
            return
        if isinstance(packet, btp.BtpResponse | btp.BtpError):
            future = self._waiting.get(packet.request_id)
            if future is None or future.done():
                return
            entry = btp.find_protocol(packet.protocol_data, "ilp")
            if isinstance(packet, btp.BtpError) or entry is None:
                future.set_exception(LinkClosed(f"{self.peer} answered without an ILP packet"))
                return
            try:
                response = decode_packet(entry.data)
            except DecodeError as exc:
                future.set_exception(LinkClosed(f"{self.peer} sent a malformed ILP answer: {exc}"))
                return
            if isinstance(response, Prepare):
                future.set_exception(LinkClosed(f"{self.peer} answered a Prepare with a Prepare"))
            else:
                future.set_result(response)
            return
        if isinstance(packet, btp.BtpTransfer):
            await self.ws.send_bytes(btp.encode_btp(btp.BtpResponse(packet.request_id)))
            return
        entry = btp.find_protocol(packet.protocol_data, "ilp")
        if entry is None:
            await self.ws.send_bytes(btp.encode_btp(btp.BtpResponse(packet.request_id)))
            return
        try:
            prepare = decode_packet(entry.data)
        except DecodeError as exc:
            await self.ws.send_bytes(
                _error(packet.request_id, "F00", f"malformed ILP packet: {exc}")
            )
            return
        if not isinstance(prepare, Prepare):
            await self.ws.send_bytes(_error(packet.request_id, "F00", "expected an ILP Prepare"))
            return
        task = asyncio.create_task(self._answer(packet.request_id, prepare))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request_id: int, prepare: Prepare) -> None:
        try:
            response: Fulfill | Reject = await self.on_prepare(self.peer, prepare)
        except Exception:
            log.exception("handling a Prepare from %s failed", self.peer)
            response = Reject("T00", "", "internal error", b"")
        reply = btp.BtpResponse(request_id, _ilp_entry(encode_packet(response)))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(btp.encode_btp(reply))


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
