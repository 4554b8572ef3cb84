"""The HTTP adapter: aiohttp in front of a :class:`~devchain.chain.DevChain`.

The chain is not thread-safe and py-evm is CPU-bound, so every request body is
handled on one dedicated worker thread; the event loop stays free.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from .chain import DevChain
from .rpc import handle_payload

__all__ = ["DevchainServer"]


class DevchainServer:
    """Serves one fresh dev chain over HTTP JSON-RPC at ``url`` (``POST /``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8545) -> None:
        self.host = host
        self.port = port
        self.chain: DevChain | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devchain")
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Build the chain (deploys the factory) and start listening; port 0 picks a free one."""
        loop = asyncio.get_running_loop()
        self.chain = await loop.run_in_executor(self._executor, DevChain)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        app.router.add_get("/", self._info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._executor.shutdown(wait=True)

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.chain is not None
        body = await request.read()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self._executor, handle_payload, body, self.chain.call)
        if answer is None:
            return web.Response(status=204)
        return web.Response(body=answer, content_type="application/json")

    async def _info(self, request: web.Request) -> web.Response:
        return web.Response(text="devchain: Ethereum JSON-RPC 2.0, POST a request to this URL\n")
