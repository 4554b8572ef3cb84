"""The aiohttp application: ``/trpc`` and ``/rpc`` (JSON-RPC over WebSocket), ``/health``.

Extension seam: if the module :mod:`dassie.ilp` exists and has ``setup(app, node)``,
it is called once with the application and the (not yet started) node, after the
node's startup hook is registered, so handlers it adds may use ``node.store``
once the app runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .ilp import rpc_methods as ilp_rpc_methods  # engineer E: the ILP RPC methods
from .node import Node
from .rpc.methods import methods
from .rpc.server import rpc_handler

log = logging.getLogger(__name__)

NODE_KEY = web.AppKey("node", Node)


def _install_extensions(app: web.Application, node: Node) -> None:
    try:
        module = importlib.import_module("dassie.ilp")
    except ModuleNotFoundError as exc:
        if exc.name != "dassie.ilp":
            raise
        return
    setup = getattr(module, "setup", None)
    if callable(setup):
        setup(app, node)


def build_app(node: Node) -> web.Application:
    """The node's web application; starting the app starts the node."""
    app = web.Application()
    app[NODE_KEY] = node

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        yield
        await node.stop()

    app.cleanup_ctx.append(lifecycle)
    handler = rpc_handler(node.config.rpc_auth_token, methods(node) | ilp_rpc_methods(node))
    app.router.add_get("/trpc", handler)
    app.router.add_get("/rpc", handler)

    async def health(request: web.Request) -> web.Response:
        code, body = await node.health()
        return web.json_response(body, status=code)

    app.router.add_get("/health", health)
    _install_extensions(app, node)
    return app
