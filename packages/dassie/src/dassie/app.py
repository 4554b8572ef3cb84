"""The aiohttp application: ``/trpc`` and ``/rpc`` (JSON-RPC over WebSocket), ``/health``,
``/metrics`` (Prometheus).

Extension seam (one module, :mod:`dassie.ilp`, if it exists):

- ``setup(app, node)`` is called once with the application and the (not yet
  started) node, after the node's startup hook is registered, so handlers and
  cleanup contexts it adds may use ``node.store`` once the app runs;
- ``rpc_methods(node) -> {name: handler}`` adds RPC methods (a handler takes the
  params object and returns the result); the contract's methods cannot be replaced.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from types import ModuleType

from aiohttp import web

from .metrics import NodeMetrics
from .node import Node
from .rpc.methods import methods
from .rpc.server import rpc_handler

log = logging.getLogger(__name__)

NODE_KEY = web.AppKey("node", Node)


def _extension() -> ModuleType | None:
    try:
        return importlib.import_module("dassie.ilp")
    except ModuleNotFoundError as exc:
        if exc.name != "dassie.ilp":
            raise
        return None


def build_app(node: Node) -> web.Application:
    """The node's web application; starting the app starts the node."""
    app = web.Application()
    app[NODE_KEY] = node

    metrics = NodeMetrics()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        node.claims.on_accepted.append(metrics.on_accepted)
        yield
        await node.stop()

    app.cleanup_ctx.append(lifecycle)
    extension = _extension()  # engineer E's Interledger side (dassie.ilp)
    table = methods(node)
    extra = getattr(extension, "rpc_methods", None)
    if callable(extra):
        for name, method in extra(node).items():
            table.setdefault(name, method)
    handler = rpc_handler(node.config.rpc_auth_token, table)
    app.router.add_get("/trpc", handler)
    app.router.add_get("/rpc", handler)

    async def health(request: web.Request) -> web.Response:
        code, body = await node.health()
        return web.json_response(body, status=code)

    app.router.add_get("/health", health)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(node), content_type="text/plain", charset="utf-8")

    app.router.add_get("/metrics", prometheus)
    setup = getattr(extension, "setup", None)
    if callable(setup):
        setup(app, node)
    return app
