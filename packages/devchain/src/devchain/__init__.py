"""A local EVM for development and tests: py-evm behind Ethereum JSON-RPC over HTTP.

Chain id 31337, ten accounts from the well-known test mnemonic (10000 ETH each),
the payment-channel factory deployed by account 0 in its first transaction.
Never used in production.

- :mod:`devchain.accounts`: the constants (mnemonic, chain id, accounts, factory address).
- :mod:`devchain.chain`: the chain itself and its JSON-RPC methods (no I/O).
- :mod:`devchain.wire`: JSON-RPC values <-> Python (params, results, errors).
- :mod:`devchain.rpc`: the JSON-RPC 2.0 envelope (single and batch requests).
- :mod:`devchain.server`: the aiohttp HTTP adapter.
- :mod:`devchain.testing`: ``running_devchain()`` and ``devchain_process()`` for tests.
"""
