"""The operator's payment node: ledger, claim verification, settlement, RPC.

Layout: sans-I/O cores (``ledger.model``, ``claims.verify``, ``rpc.jsonrpc``) with
asyncio adapters on top (``ledger.store``, ``claims.service``, ``rpc.server``,
``settlement.evm``). ``app.build_app`` wires a :class:`~dassie.node.Node` into aiohttp.
"""

__version__ = "0.1.0"
