"""The aiohttp adapter: one port serving WebSocket, NIP-11, /health and /metrics."""

from .app import RelayServer

__all__ = ["RelayServer"]
