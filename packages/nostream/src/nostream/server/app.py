"""The relay's HTTP/WebSocket server on aiohttp, driving :class:`~nostream.session.Session`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..bus.base import EventBus
from ..config import Settings
from ..payments.gate import PaymentGate
from ..ratelimit.base import RateLimiter
from ..relay import Relay
from ..session import Session
from ..storage.base import EventStore
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


class _Outbox:
    """A connection's bounded outgoing queue and the task that writes it to the socket."""

    def __init__(
        self, ws: web.WebSocketResponse, limit: int, transport: asyncio.BaseTransport | None
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.limit = limit
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.writing = False
        self.drained = asyncio.Event()
        self.closer: asyncio.Task[None] | None = None
        self.task = asyncio.create_task(self._run(), name="ws-writer")

    def send(self, frame: bytes) -> None:
        if self.overflowed or self.ws.closed:
            return
        if len(self.queue) >= self.limit:
            self.overflowed = True
            self.queue.clear()
            log.info("closing a slow client: more than %d frames queued", self.limit)
            self.closer = asyncio.create_task(self._close_slow(), name="ws-close-slow")
            return
        self.queue.append(frame)
        self.wake.set()

    async def _run(self) -> None:
        ws = self.ws
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.queue and not ws.closed:
                    self.writing = True
                    await ws.send_frame(self.queue.popleft(), WSMsgType.TEXT)
                    self.writing = False
                self.drained.set()
                if self.overflowed:
                    return
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer stopped: %s", exc)
        finally:
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
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        else:
            log.warning("cannot abort a slow connection: no transport")

    async def flush(self) -> None:
        """Wait, when the queue is half full, until the writer has emptied it."""
        if len(self.queue) < self.limit // 2:
            return
        while self.queue and not self.ws.closed and not self.task.done():
            self.drained.clear()
            await self.drained.wait()

    async def drain_and_stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class RelayServer:
    """Runs a :class:`Relay` behind aiohttp on ``settings.host:settings.port``."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        bus: EventBus,
        limiter: RateLimiter,
        gate: PaymentGate,
    ) -> None:
        self.settings = settings
        self.relay = Relay(settings, store, bus, limiter, gate)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._purger: asyncio.Task[None] | None = None
        self.port: int = settings.port

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
        outbox = _Outbox(ws, network.max_outgoing_queue, transport)
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
