"""The relay's link to the Dassie node: one persistent JSON-RPC WebSocket.

An asyncio adapter over :class:`~nostream.payments.jsonrpc.JsonRpcClient`. Many
requests share the connection, matched by id. When the link drops it reconnects
by itself with exponential backoff and jitter; calls made while it is down, or
not answered within the timeout, raise :class:`RpcUnavailable` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .jsonrpc import Backoff, JsonRpcClient, ProtocolViolation

log = logging.getLogger("nostream.payments.rpc")


class RpcUnavailable(Exception):
    """The node is not connected or did not answer in time."""


OnConnect = Callable[["DassieRpcClient"], Awaitable[None]]


class DassieRpcClient:
    """A self-healing JSON-RPC 2.0 client over one WebSocket."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        backoff: Backoff | None = None,
        on_connect: OnConnect | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self._backoff = backoff or Backoff(0.1, 30.0)
        self._on_connect = on_connect
        self._core = JsonRpcClient()
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._hook: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._changed = asyncio.Condition()
        self.last_error: str | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._task is None:
            # Bound the TCP connect; the link itself lives as long as it is healthy.
            connect = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10)
            self._session = aiohttp.ClientSession(timeout=connect)
            self._task = asyncio.create_task(self._run(), name="dassie-rpc")

    async def wait_connected(self) -> None:
        """Wait until the link is up (wrap in ``asyncio.timeout`` to bound it)."""
        await self._connected.wait()

    async def wait_until(self, predicate: Callable[[DassieRpcClient], bool]) -> None:
        """Wait until ``predicate(self)`` holds; re-checked on every connect, loss or failed try."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._fail_pending("RPC client closed")

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; its result, or RpcError / RpcUnavailable."""
        ws = self._ws
        if ws is None or ws.closed:
            raise RpcUnavailable("not connected to the node")
        request_id, frame = self._core.request(method, params)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        try:
            await ws.send_str(frame.decode())
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError as exc:
            raise RpcUnavailable(f"no answer to {method} within {self.timeout:g}s") from exc
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise RpcUnavailable(f"send failed: {exc}") from exc
        finally:
            self._waiters.pop(request_id, None)
            self._core.forget(request_id)
            if not future.done():
                future.cancel()

    async def _run(self) -> None:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        while True:
            try:
                async with self._session.ws_connect(
                    self.url, headers=headers, heartbeat=20.0, max_msg_size=16 * 2**20
                ) as ws:
                    self._ws = ws
                    self._backoff.reset()
                    self.connects += 1
                    self.last_error = None
                    log.info("Connected to Dassie RPC at %s", self.url)
                    if self._on_connect is not None:
                        self._hook = asyncio.create_task(self._after_connect())
                    self._connected.set()
                    await self._notify()
                    await self._read(ws)
                self.last_error = "connection closed by the node"
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as exc:
                self.last_error = f"handshake refused: HTTP {exc.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                self._connected.clear()
                self._fail_pending("connection to the node lost")
            await self._notify()
            delay = self._backoff.next_delay()
            log.warning("Dassie RPC unavailable (%s); retrying in %.2fs", self.last_error, delay)
            await asyncio.sleep(delay)

    async def _after_connect(self) -> None:
        assert self._on_connect is not None
        try:
            await self._on_connect(self)
        except Exception:
            log.exception("Dassie RPC on-connect hook failed")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            try:
                responses = self._core.receive(msg.data)
            except ProtocolViolation as exc:
                log.warning("Dassie RPC sent a bad frame: %s", exc)
                continue
            for response in responses:
                future = self._waiters.get(response.id)
                if future is None or future.done():
                    continue
                if response.error is not None:
                    future.set_exception(response.error)
                else:
                    future.set_result(response.result)

    def _fail_pending(self, reason: str) -> None:
        self._core.forget_all()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(RpcUnavailable(reason))
        self._waiters.clear()
