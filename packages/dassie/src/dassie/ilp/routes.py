"""HTTP routes of the ILP side: ``/btp``, ``/ilp``, and SPSP under ``/.well-known/pay``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from interledger import spsp
from interledger.address import is_valid_segment

from .btp import BtpLink, accept
from .http import handle_ilp_http
from .service import IlpService

DEFAULT_ACCOUNT = "default"
ServiceGetter = Callable[[], IlpService]


def add_routes(app: web.Application, get_service: ServiceGetter) -> None:
    async def btp_handler(request: web.Request) -> web.StreamResponse:
        service = get_service()
        peer, ws = await accept(request, service.tokens)
        if peer is not None:
            await service.run_link(BtpLink(peer, ws, service.submit))
        return ws

    async def ilp_handler(request: web.Request) -> web.StreamResponse:
        service = get_service()
        return await handle_ilp_http(request, service.tokens, service.handle_prepare)

    async def spsp_handler(request: web.Request) -> web.StreamResponse:
        account = request.match_info.get("account", DEFAULT_ACCOUNT)
        if not is_valid_segment(account) or len(account) > 128:
            raise web.HTTPNotFound(text="unknown payment pointer account")
        details = get_service().spsp_details(account.lower() if len(account) == 64 else account)
        return web.Response(
            body=spsp.encode_response(details),
            content_type=spsp.CONTENT_TYPE,
            headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"},
        )

    app.router.add_get("/btp", btp_handler)
    app.router.add_post("/ilp", ilp_handler)
    app.router.add_get("/.well-known/pay", spsp_handler)
    app.router.add_get("/.well-known/pay/{account}", spsp_handler)
    app.router.add_get("/pay/{account}", spsp_handler)
