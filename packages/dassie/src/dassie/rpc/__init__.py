"""The node's JSON-RPC 2.0 over WebSocket: the pure protocol (:mod:`.jsonrpc`),
the method table (:mod:`.methods`) and the aiohttp endpoint (:mod:`.server`)."""
