"""The node's Interledger side: asyncio adapters around the sans-I/O :mod:`interledger`.

:func:`setup` is the node's extension hook (see :mod:`dassie.app`): it reads the
ILP settings (:mod:`.config`), mounts ``/btp``, ``/ilp`` and the SPSP routes, and
starts the links once the node's ledger is open.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from .config import IlpConfig, load_ilp_config
from .routes import add_routes
from .rpc import Handler, ilp_methods
from .service import IlpService

if TYPE_CHECKING:
    from ..node import Node

_services: weakref.WeakKeyDictionary[Node, IlpService] = weakref.WeakKeyDictionary()


def service_of(node: Node) -> IlpService:
    """The running ILP service of ``node`` (raises if the node has not started)."""
    try:
        return _services[node]
    except KeyError:
        raise RuntimeError("the ILP service is not running") from None


def rpc_methods(node: Node) -> dict[str, Handler]:
    """The ILP RPC methods, for the node's method table."""
    return ilp_methods(lambda: service_of(node))


def setup(app: web.Application, node: Node, env: Mapping[str, str] | None = None) -> None:
    """Mount the ILP routes on ``app`` and run the ILP service with ``node``."""
    config: IlpConfig = load_ilp_config(
        os.environ if env is None else env, node.config.ilp_address, node.config.rpc_auth_token
    )
    node.ilp_asset_code = config.asset_code  # what an older ledger's ILP accounts are in

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = IlpService(config, node.store)
        _services[node] = service
        await service.start()
        yield
        await service.stop()
        _services.pop(node, None)

    app.cleanup_ctx.append(lifecycle)
    add_routes(app, lambda: service_of(node))


__all__ = ["IlpService", "rpc_methods", "service_of", "setup"]
