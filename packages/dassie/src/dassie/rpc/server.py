"""The RPC endpoint: bearer auth before the upgrade, then JSON-RPC over WebSocket.

Requests on one connection run concurrently and are answered by id as each
finishes; a batch (at most :data:`~.jsonrpc.MAX_BATCH` entries) is answered as
one array once all its calls are done, its entries run concurrently too.

Per frame the endpoint does the least it can on the event loop: the frame is
parsed once where it is read (no task per frame), each call runs as one task
whose completion fills its slot of the answer (a callback: no wrapper coroutine,
no ``gather``), and the answer is written at once in one frame (no task nor lock
per write unless the socket pushes back).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import types
from collections.abc import Coroutine, Generator
from functools import partial
from typing import Any

from aiohttp import WSMsgType, web

from . import jsonrpc
from .methods import Handler

log = logging.getLogger(__name__)

MAX_FRAME = 1 << 20


def authorized(header: str | None, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    scheme, _, given = (header or "").partition(" ")
    expected = token.encode()
    candidate = given.strip().encode() if scheme.lower() == "bearer" else b""
    return hmac.compare_digest(candidate, expected)


@types.coroutine
def _rest(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of ``coro``, which already ran until it yielded ``waiting`` (a future)."""
    try:
        yield waiting
        yield from coro
    except ConnectionError:
        pass


class _Batch:
    """The answers of one batch frame, in entry order; sent once the last is known."""

    __slots__ = ("conn", "left", "slots")

    def __init__(self, conn: _Connection, size: int) -> None:
        self.conn = conn
        self.slots: list[dict[str, Any] | None] = [None] * size
        self.left = size

    def put(self, index: int, response: dict[str, Any] | None) -> None:
        self.slots[index] = response
        self.left -= 1
        if self.left == 0:
            answers = [r for r in self.slots if r is not None]
            if answers:  # a batch of notifications only is answered with nothing
                self.conn.send(answers)


class _Connection:
    """One client's link: runs the calls of each frame and writes their answers."""

    def __init__(self, ws: web.WebSocketResponse, handlers: dict[str, Handler]) -> None:
        self.ws = ws
        self.handlers = handlers
        self.loop = asyncio.get_running_loop()
        self.running: set[asyncio.Future[Any]] = set()
        """Calls and writes in flight (kept referenced until done)."""

    def frame(self, data: str | bytes) -> None:
        """Start every call of one incoming frame."""
        batch, items = jsonrpc.parse(data)
        if not batch:
            item = items[0]
            if isinstance(item, jsonrpc.Request):
                self.start(item, None, 0)
            else:
                self.send(item)
            return
        answer = _Batch(self, len(items))
        for index, item in enumerate(items):
            if isinstance(item, jsonrpc.Request):
                self.start(item, answer, index)
            else:
                answer.put(index, item)

    def start(self, request: jsonrpc.Request, batch: _Batch | None, index: int) -> None:
        handler = self.handlers.get(request.method)
        if handler is None:
            self.answer(
                request,
                batch,
                index,
                jsonrpc.error(
                    request.id, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {request.method}"
                ),
            )
            return
        # A coroutine runs as a task; a handler may also hand back a future (no task).
        task = asyncio.ensure_future(handler(request.params), loop=self.loop)
        self.running.add(task)
        task.add_done_callback(partial(self.finished, request, batch, index))

    def finished(
        self,
        request: jsonrpc.Request,
        batch: _Batch | None,
        index: int,
        task: asyncio.Future[Any],
    ) -> None:
        """A call's task is done: its answer, or the error its failure maps to."""
        self.running.discard(task)
        if task.cancelled():
            response = jsonrpc.error(request.id, jsonrpc.INTERNAL_ERROR, "Internal error")
        else:
            exc = task.exception()
            if exc is None:
                response = jsonrpc.result(request.id, task.result())
            elif isinstance(exc, jsonrpc.RpcFailure):
                response = jsonrpc.error(request.id, exc.code, exc.message, exc.data)
            else:
                log.error("RPC method %s failed", request.method, exc_info=exc)
                response = jsonrpc.error(request.id, jsonrpc.INTERNAL_ERROR, "Internal error")
        self.answer(request, batch, index, response)

    def answer(
        self,
        request: jsonrpc.Request,
        batch: _Batch | None,
        index: int,
        response: dict[str, Any],
    ) -> None:
        if request.notification:
            if batch is not None:
                batch.put(index, None)
            return
        if batch is None:
            self.send(response)
        else:
            batch.put(index, response)

    def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Write one answer frame now; only if the socket pushes back does a task wait."""
        ws = self.ws
        if ws.closed:
            return
        coro = ws.send_frame(jsonrpc.encode(message), WSMsgType.TEXT)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return  # written (an uncompressed frame is written without waiting)
        except (ConnectionError, RuntimeError):
            coro.close()
            return
        # The frame is written; the send waits for the socket to drain before it ends.
        task = self.loop.create_task(_rest(coro, waiting))
        self.running.add(task)
        task.add_done_callback(self.running.discard)


def rpc_handler(token: str, handlers: dict[str, Handler]) -> Any:
    """An aiohttp handler serving ``handlers`` to clients presenting ``token``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not authorized(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(
                text='{"error":"unauthorized"}',
                content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Small JSON frames on a local link: compressing them costs more than it saves.
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=30, compress=False)
        await ws.prepare(request)
        conn = _Connection(ws, handlers)
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                conn.frame(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
        if conn.running:
            # Let in-flight calls finish (their effects are already decided).
            await asyncio.gather(*conn.running, return_exceptions=True)
        return ws

    return handle
