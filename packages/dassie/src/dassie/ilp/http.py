"""ILP over HTTP: ``POST /ilp`` (bearer token of a peer) and the dialing side."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from interledger.errors import DecodeError
from interledger.packet import (
    Fulfill,
    Prepare,
    Reject,
    decode_packet,
    decode_response,
    encode_packet,
)

from .btp import LinkClosed, PrepareHandler, Waiter, match_token

CONTENT_TYPE = "application/octet-stream"


async def handle_ilp_http(
    request: web.Request, tokens: dict[str, str], on_prepare: PrepareHandler
) -> web.StreamResponse:
    """Serve one ``POST /ilp``: a Prepare in, its Fulfill or Reject out."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    peer = match_token(tokens, given.strip()) if scheme.lower() == "bearer" else None
    if peer is None:
        raise web.HTTPUnauthorized(
            text="invalid or missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    body = await request.read()  # bounded by the app's client_max_size
    try:
        prepare = decode_packet(body)
    except DecodeError as exc:
        raise web.HTTPBadRequest(text=f"malformed ILP packet: {exc}") from None
    if not isinstance(prepare, Prepare):
        raise web.HTTPBadRequest(text="expected an ILP Prepare")
    response = await on_prepare(peer, prepare)
    return web.Response(body=encode_packet(response), content_type=CONTENT_TYPE)


class HttpLink:
    """Sends Prepares to a peer's ``/ilp`` endpoint."""

    def __init__(self, peer: str, url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.peer = peer
        self.url = url
        self.token = token
        self.session = session
        self._requests: dict[int, asyncio.Task[None]] = {}
        self._next_id = 1

    def send_prepare(self, raw: bytes, waiter: Waiter) -> int:
        """POST an encoded Prepare; its answer goes to ``waiter``. Returns a request id."""
        request_id = self._next_id
        self._next_id += 1
        task = asyncio.ensure_future(self._post(raw, waiter))
        self._requests[request_id] = task
        task.add_done_callback(lambda _: self._requests.pop(request_id, None))
        return request_id

    def forget(self, request_id: int) -> None:
        """Give up on a request (the Prepare expired): the HTTP request is cancelled."""
        task = self._requests.pop(request_id, None)
        if task is not None:
            task.cancel()

    async def _post(self, raw: bytes, waiter: Waiter) -> None:
        try:
            response, body = await self._exchange(raw)
        except LinkClosed as exc:
            waiter.on_failure(str(exc))
        except Exception as exc:  # e.g. a client timeout: the peer did not answer
            waiter.on_failure(f"{self.peer} unreachable: {exc!r}")
        else:
            waiter.on_response(response, body)

    async def _exchange(self, raw: bytes) -> tuple[Fulfill | Reject, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": CONTENT_TYPE}
        try:
            async with self.session.post(self.url, data=raw, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise LinkClosed(f"{self.peer} answered HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise LinkClosed(f"{self.peer} unreachable: {exc}") from None
        try:
            return decode_response(body), body
        except DecodeError as exc:
            raise LinkClosed(f"{self.peer} sent a malformed ILP answer: {exc}") from None
