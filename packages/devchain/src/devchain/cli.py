"""``devchain [--host 127.0.0.1] [--port 8545]``: run the dev chain until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .accounts import ACCOUNTS, CHAIN_ID, INITIAL_BALANCE_WEI
from .server import DevchainServer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devchain",
        description="A local EVM (py-evm) with Ethereum JSON-RPC over HTTP and the "
        "payment-channel factory deployed. For development and tests only.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8545,
        help="port to listen on; 0 picks a free one (default 8545)",
    )
    return parser


def _banner(server: DevchainServer) -> str:
    assert server.chain is not None
    ether = INITIAL_BALANCE_WEI // 10**18
    lines = [
        f"devchain: chain id {CHAIN_ID}",
        f"RPC URL: {server.url}",
        f"ChannelFactory: {server.chain.factory_address}",
        f"Accounts ({ether} ETH each; well-known test keys, never use them on a real chain):",
    ]
    lines += [f"  ({i}) {address} {key}" for i, (address, key) in enumerate(ACCOUNTS)]
    return "\n".join(lines)


async def _serve(host: str, port: int) -> int:
    server = DevchainServer(host, port)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        print(f"devchain: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. missing contract artifacts: one line, not a traceback
        await server.stop()
        print(f"devchain: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(_banner(server), flush=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await server.stop()
    print("devchain: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``devchain`` and ``dassie devchain``; returns the exit status."""
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"devchain: --port must be 0..65535, got {args.port}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args.host, args.port))
