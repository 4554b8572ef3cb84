"""The RPC endpoint: bearer auth before the upgrade, then JSON-RPC over WebSocket.

Requests on one connection run concurrently and are answered by id as each
finishes; a batch (at most :data:`~.jsonrpc.MAX_BATCH` entries) is answered as
one array once all its calls are done, its entries run concurrently too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
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


async def _call(handlers: dict[str, Handler], request: jsonrpc.Request) -> dict[str, Any] | None:
    handler = handlers.get(request.method)
    if handler is None:
        response = jsonrpc.error(
            request.id, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {request.method}"
        )
    else:
        try:
            response = jsonrpc.result(request.id, await handler(request.params))
        except jsonrpc.RpcFailure as exc:
            response = jsonrpc.error(request.id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("RPC method %s failed", request.method)
            response = jsonrpc.error(request.id, jsonrpc.INTERNAL_ERROR, "Internal error")
    return None if request.notification else response


async def _answer(
    handlers: dict[str, Handler], items: list[jsonrpc.Request | dict[str, Any]]
) -> list[dict[str, Any]]:
    calls = [
        _call(handlers, item) if isinstance(item, jsonrpc.Request) else _ready(item)
        for item in items
    ]
    return [r for r in await asyncio.gather(*calls) if r is not None]


async def _ready(response: dict[str, Any]) -> dict[str, Any]:
    return response


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
        send_lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def serve(frame: str | bytes) -> None:
            batch, items = jsonrpc.parse(frame)
            if not batch and isinstance(items[0], jsonrpc.Request):
                single = await _call(handlers, items[0])
                out: Any = single
            else:
                answers = await _answer(handlers, items)
                out = answers if batch else (answers[0] if answers else None)
            if out is None or ws.closed:
                return
            async with send_lock:
                try:
                    await ws.send_frame(jsonrpc.encode(out), WSMsgType.TEXT)
                except ConnectionError:
                    pass

        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                task = asyncio.create_task(serve(msg.data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif msg.type == WSMsgType.ERROR:
                break
        if tasks:
            # Let in-flight calls finish (their effects are already decided).
            await asyncio.gather(*tasks, return_exceptions=True)
        return ws

    return handle
