"""The relay's HTTP/WebSocket server on aiohttp, driving :class:`~nostream.session.Session`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from typing import Any, Protocol, cast

from aiohttp import WSCloseCode, WSMsgType, web

from ..relay import Relay
from ..session import Session
from . import nip11

log = logging.getLogger("nostream.server")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}
PURGE_INTERVAL = 3600.0
"""Seconds between sweeps that delete expired (NIP-40) events from storage."""
WS_SLOW_CONSUMER = 4000
"""Close code for a client that does not read fast enough (outgoing queue full)."""
WRITE_CHUNK = 256 * 1024
"""Bytes of queued frames joined into one ``transport.write`` (one send syscall)."""

_LEN2 = struct.Struct("!BBH").pack
_LEN8 = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """The RFC 6455 header of an unmasked, final, uncompressed text frame."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _LEN2(0x81, 126, length)
    return _LEN8(0x81, 127, length)


class _Writable(Protocol):
    """The part of a stream transport the outbox uses (asyncio's and uvloop's both
    have it; uvloop's transports do not derive from ``asyncio.WriteTransport``)."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...


def _writable(transport: object) -> _Writable | None:
    if all(callable(getattr(transport, name, None)) for name in ("write", "is_closing", "abort")):
        return cast(_Writable, transport)
    return None


class _Outbox:
    """A connection's bounded outgoing queue, written to the socket without a task.

    ``send`` queues a frame and schedules one write for the end of the current
    event-loop step, so every frame queued meanwhile (a burst of OKs, a REQ's
    results) leaves in one ``transport.write``, one send syscall. When the
    transport's buffer passes its high-water mark, writing waits for it to
    drain (backpressure); frames queue up meanwhile, and past ``limit`` the
    client is closed as too slow.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        limit: int,
        transport: object,
        protocol: Any = None,
    ) -> None:
        self.ws = ws
        self.transport = _writable(transport)
        self.protocol = protocol
        """aiohttp's connection protocol: says when the transport's buffer is full."""
        self.limit = limit
        self.queue: deque[bytes] = deque()
        self.overflowed = False
        self.writing = False
        """True while waiting for the transport to take more data."""
        self.stopped = self.transport is None
        self.scheduled = False
        self.drained = asyncio.Event()
        self.closer: asyncio.Task[None] | None = None
        self.waiter: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def send(self, frame: bytes) -> None:
        if self.overflowed or self.stopped or self.ws.closed:
            return
        if len(self.queue) >= self.limit:
            self.overflowed = True
            self.queue.clear()
            log.info("closing a slow client: more than %d frames queued", self.limit)
            self.closer = asyncio.create_task(self._close_slow(), name="ws-close-slow")
            return
        self.queue.append(frame)
        if not self.scheduled and not self.writing:
            self.scheduled = True
            self._loop.call_soon(self._write)

    def _write(self) -> None:
        """Write the queue in chunks until it is empty or the transport is full."""
        self.scheduled = False
        if self.writing or self.stopped:
            return
        queue = self.queue
        ws = self.ws
        transport = self.transport
        assert transport is not None
        try:
            while queue and not ws.closed:
                if transport.is_closing():
                    raise ConnectionResetError("the connection is closing")
                if len(queue) == 1:  # the common case of a live event: no join
                    frame = queue.popleft()
                    transport.write(text_frame_header(len(frame)) + frame)
                else:
                    parts: list[bytes] = []
                    size = 0
                    while queue and size < WRITE_CHUNK:
                        frame = queue.popleft()
                        parts.append(text_frame_header(len(frame)))
                        parts.append(frame)
                        size += len(frame)
                    transport.write(b"".join(parts))
                if self.protocol is not None and self.protocol.writing_paused:
                    self.writing = True
                    self.waiter = asyncio.create_task(self._wait_writable(), name="ws-drain")
                    return
        except (ConnectionError, RuntimeError) as exc:
            self._stop(exc)
        self.drained.set()

    async def _wait_writable(self) -> None:
        try:
            await self.protocol._drain_helper()
        except (ConnectionError, RuntimeError) as exc:
            self._stop(exc)
            return
        self.writing = False
        self._write()

    def _stop(self, reason: BaseException | str) -> None:
        log.debug("writer stopped: %s", reason)
        self.stopped = True
        self.queue.clear()
        self.drained.set()  # wake any flush(): nothing more will be written

    async def _close_slow(self) -> None:
        """Close with 4000; a client too slow to take even the close frame is cut off."""
        if self.writing:  # the socket takes no data, so no close frame would get through
            self._abort()
            return
        try:
            async with asyncio.timeout(2):
                await self.ws.close(code=WS_SLOW_CONSUMER, message=b"slow consumer")
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            log.warning("cannot abort a slow connection: no transport")

    async def flush(self) -> None:
        """Wait, when the queue is half full, until the writer has emptied it."""
        if len(self.queue) < self.limit // 2:
            return
        while self.queue and not self.ws.closed and not self.stopped:
            self.drained.clear()
            await self.drained.wait()

    async def drain_and_stop(self) -> None:
        self._stop("connection finished")
        if self.waiter is not None:
            self.waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.waiter


class RelayServer:
    """Runs a :class:`Relay` behind aiohttp on ``settings.host:settings.port``."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.settings = relay.settings
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._purger: asyncio.Task[None] | None = None
        self.port: int = relay.settings.port

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_route("OPTIONS", "/", self._options)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, bus and gate, then listen. ``self.port`` is the bound port."""
        relay = self.relay
        await relay.store.open()
        await relay.bus.start()
        await relay.gate.start()
        relay.verifier.start()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info("nostream listening on %s:%d", self.settings.host, self.port)
        self._purger = asyncio.create_task(self._purge_expired(), name="purge-expired")

    async def _purge_expired(self) -> None:
        """Remove NIP-40 expired events every ``PURGE_INTERVAL`` seconds (queries
        already hide them; this only frees the space)."""
        purge = getattr(self.relay.store, "purge_expired", None)
        if purge is None:
            return
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                removed = await purge()
            except Exception as exc:
                log.warning("purging expired events failed: %s", exc)
            else:
                if removed:
                    log.info("purged %d expired events", removed)

    async def stop(self) -> None:
        """Close every connection (1001), stop listening, flush storage."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"relay shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        relay = self.relay
        await relay.verifier.close()
        await relay.gate.close()
        await relay.bus.close()
        await relay.limiter.close()
        await relay.store.close()
        log.info("nostream stopped")

    # -- handlers ----------------------------------------------------------------------

    async def _options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    async def _root(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade:
            return await self._websocket(request)
        if "application/nostr+json" in request.headers.get("Accept", ""):
            doc = nip11.document(self.settings, self.relay.gate)
            return web.json_response(
                doc, content_type="application/nostr+json", headers=CORS_HEADERS
            )
        return web.Response(text="Please use a Nostr client to connect.\n")

    def _client_ip(self, request: web.Request) -> str:
        header = self.settings.network.remote_ip_header
        if header:
            value = request.headers.get(header, "")
            if value:
                return value.split(",")[0].strip()
        return request.remote or "unknown"

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        network = self.settings.network
        ws = web.WebSocketResponse(
            max_msg_size=network.max_payload_size,
            heartbeat=network.heartbeat_interval,
            compress=False,
        )
        transport = request.transport
        await ws.prepare(request)
        outbox = _Outbox(ws, network.max_outgoing_queue, transport, request.protocol)
        session = Session(self.relay, self._client_ip(request), outbox.send, outbox.flush)
        metrics = self.relay.metrics
        metrics.connections += 1
        metrics.connections_total += 1
        self._sockets.add(ws)
        session.start()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await session.handle(msg.data)
                    if outbox.overflowed:
                        break
                elif msg.type is WSMsgType.ERROR:
                    log.debug("websocket error: %s", ws.exception())
        finally:
            session.stop()
            await session.drain()
            self._sockets.discard(ws)
            metrics.connections -= 1
            await outbox.drain_and_stop()
            if outbox.closer is not None:
                await outbox.closer
            if not ws.closed:
                await ws.close()
        return ws

    async def _health(self, request: web.Request) -> web.Response:
        body, status = await health_report(self)
        return web.json_response(body, status=status, headers=CORS_HEADERS)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.relay.metrics.render(),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
        )


async def health_report(server: RelayServer) -> tuple[dict[str, Any], int]:
    """``/health``: database down => unhealthy (503); redis or node down => degraded."""
    relay = server.relay
    settings = server.settings
    try:
        db_ok = await asyncio.wait_for(relay.store.ping(), 3)
    except Exception:
        db_ok = False
    backend = "postgres" if settings.database is not None else "sqlite"
    checks: dict[str, Any] = {"database": {"status": "ok" if db_ok else "down", "backend": backend}}
    if settings.redis is None:
        checks["redis"] = {"status": "disabled"}
    else:
        checks["redis"] = {"status": "ok" if relay.bus.healthy() else "down"}
    rpc_status, details = relay.gate.health()
    checks["dassie_rpc"] = {"status": rpc_status, **details}
    if not db_ok:
        status = "unhealthy"
    elif checks["redis"]["status"] == "down" or rpc_status not in ("ok", "disabled"):
        status = "degraded"
    else:
        status = "healthy"
    return {"status": status, "checks": checks}, 503 if status == "unhealthy" else 200
