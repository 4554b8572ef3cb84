"""ILP over HTTP: ``POST /ilp`` (bearer token of a peer) and the dialing side."""

from __future__ import annotations

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

from .btp import LinkClosed, PrepareHandler, match_token

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

    async def send(self, prepare: Prepare) -> Fulfill | Reject:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": CONTENT_TYPE}
        try:
            async with self.session.post(
                self.url, data=encode_packet(prepare), headers=headers
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise LinkClosed(f"{self.peer} answered HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise LinkClosed(f"{self.peer} unreachable: {exc}") from None
        try:
            return decode_response(body)
        except DecodeError as exc:
            raise LinkClosed(f"{self.peer} sent a malformed ILP answer: {exc}") from None
