"""The relay's link to the Dassie node: one persistent JSON-RPC WebSocket.

An asyncio adapter over :class:`~nostream.payments.jsonrpc.JsonRpcClient`. Many
requests share the connection, matched by id. Calls leave at the end of the
event-loop step they were made in, together as one JSON-RPC batch frame (a lone
call as a plain request); while the node is still answering the previous frame
(for at most ``patience`` seconds), new calls wait and then leave as one batch.
So a busy relay sends and receives one frame per round trip instead of one per
event, and an idle one sends each call at once. When the link drops it
reconnects by itself with exponential backoff and jitter; calls made while it
is down fail at once, and calls not answered within ``timeout`` seconds of
being made raise :class:`RpcUnavailable`.

Per call the adapter keeps one future and one dict entry; per frame it writes
at once from the step that flushes (no task, unless the socket pushes back) and
notes the frame's deadline in a queue that one timer walks (no timer per frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import aiohttp

from .jsonrpc import Backoff, JsonRpcClient, ProtocolViolation

log = logging.getLogger("nostream.payments.rpc")


class RpcUnavailable(Exception):
    """The node is not connected or did not answer in time."""


OnConnect = Callable[["DassieRpcClient"], Awaitable[None]]


@types.coroutine
def _rest(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of ``coro``, which already ran until it yielded ``waiting`` (a future)."""
    yield waiting
    yield from coro


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
        window: int = 1,
        patience: float = 0.01,
    ) -> None:
        """``window`` and ``patience``: see :class:`~nostream.payments.jsonrpc.JsonRpcClient`."""
        self.url = url
        self.token = token
        self.timeout = timeout
        self._backoff = backoff or Backoff(0.1, 30.0)
        self._on_connect = on_connect
        self._core = JsonRpcClient(window=window, patience=patience)
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._queued_since: float | None = None
        """When the oldest call not yet sent was made (its frame's deadline counts from it)."""
        self._deadlines: deque[tuple[float, list[int]]] = deque()
        """Sent frames in order: (deadline of their oldest call, their ids)."""
        self._expiry: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._wake: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
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
            self._loop = asyncio.get_running_loop()
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
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for sending in list(self._sending):
            sending.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._fail_pending("RPC client closed")

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; its result, or RpcError / RpcUnavailable.

        The request leaves with the other calls of this event-loop step, or, while the
        node is still answering an earlier frame, with every call made meanwhile.
        """
        ws = self._ws
        loop = self._loop
        if ws is None or ws.closed or loop is None:
            raise RpcUnavailable("not connected to the node")
        request_id = self._core.queue(method, params)
        future: asyncio.Future[Any] = loop.create_future()
        self._waiters[request_id] = future
        if self._queued_since is None:
            self._queued_since = loop.time()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            return await future
        finally:
            if not future.done() or future.cancelled():  # the caller gave up
                self._drop(request_id)

    def _drop(self, request_id: int) -> asyncio.Future[Any] | None:
        self._core.forget(request_id)
        return self._waiters.pop(request_id, None)

    def _on_wake(self) -> None:
        self._wake = None
        self._kick()

    def _kick(self) -> None:
        """Try to send what is queued at the end of this event-loop step."""
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued requests if the core says so, else wait for an answer or a timer."""
        self._flush_scheduled = False
        core = self._core
        loop = self._loop
        if not core.queued or loop is None:
            return
        now = loop.time()
        ws = self._ws
        if ws is not None and not ws.closed and not core.may_send(now):
            wake = core.wake_at(now)
            if wake is not None and self._wake is None:
                self._wake = loop.call_at(wake, self._on_wake)
            return
        frames = core.flush(now)
        since = now if self._queued_since is None else self._queued_since
        self._queued_since = None
        if ws is None or ws.closed:
            for ids, _ in frames:
                self._fail(ids, "connection to the node lost")
            return
        deadline = since + self.timeout
        for ids, frame in frames:
            self._write(ws, ids, frame)
            self._deadlines.append((deadline, ids))
        if self._expiry is None:
            self._expiry = loop.call_at(deadline, self._expire)

    def _write(self, ws: aiohttp.ClientWebSocketResponse, ids: list[int], frame: bytes) -> None:
        """Write one frame now; only if the socket pushes back does a task finish the send."""
        coro = ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return  # written: an uncompressed frame needs no waiting
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            coro.close()
            self._fail(ids, f"send failed: {exc}")
            return
        assert self._loop is not None
        task = self._loop.create_task(self._drain(coro, waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _drain(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Finish a send waiting for the socket to drain (its frame is already written)."""
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            await _rest(coro, waiting)

    def _expire(self) -> None:
        """Fail the calls of every frame whose deadline has passed; re-arm for the next."""
        self._expiry = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time() + 0.001
        deadlines = self._deadlines
        waiters = self._waiters
        while deadlines and deadlines[0][0] <= now:
            _, ids = deadlines.popleft()
            late = [i for i in ids if i in waiters]
            if late:
                self._fail(late, f"no answer within {self.timeout:g}s")
        if deadlines:
            self._expiry = loop.call_at(deadlines[0][0], self._expire)

    def _fail(self, ids: list[int], reason: str) -> None:
        for request_id in ids:
            future = self._drop(request_id)
            if future is not None and not future.done():
                future.set_exception(RpcUnavailable(reason))

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
            waiters = self._waiters
            for response in responses:
                future = waiters.pop(response.id, None)
                if future is None or future.done():
                    continue
                if response.error is not None:
                    future.set_exception(response.error)
                else:
                    future.set_result(response.result)
            if responses and self._core.queued:
                self._kick()  # a frame was answered: what waited for it may leave

    def _fail_pending(self, reason: str) -> None:
        self._core.forget_all()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(RpcUnavailable(reason))
        self._waiters.clear()
        self._deadlines.clear()
        self._queued_since = None
