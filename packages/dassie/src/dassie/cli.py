"""``dassie serve`` runs the node; ``dassie devchain [args]`` runs the local EVM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from service_runtime import run, stop_requested, tune_gc

from .config import ConfigError, load_config


def serve() -> int:
    from .app import build_app
    from .ledger.migrations import MigrationError
    from .node import Node

    try:
        config = load_config()
        node = Node(config)
        app = build_app(node)  # the Interledger module reads its own variables here
    except ConfigError as exc:
        print(f"dassie: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    chains = ", ".join(f"{c.name} ({c.chain_id}) as {c.relay_address}" for c in config.chains)
    logging.getLogger("dassie").info(
        "dassie on %s:%d, ledger %s, chains: %s",
        config.host,
        config.port,
        config.ledger_db_path,
        chains or "none",
    )
    try:
        _run(app, config.host, config.port)
    except ConfigError as exc:  # found while starting, e.g. a changed ILP_ASSET_CODE
        print(f"dassie: configuration error: {exc}", file=sys.stderr)
        return 2
    except MigrationError as exc:  # a ledger from an older version that cannot be upgraded
        print(f"dassie: cannot upgrade the ledger: {exc}", file=sys.stderr)
        return 2
    return 0


def _run(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM.

    Unlike ``web.run_app``, the app's cleanup runs even when its startup fails part way
    (say the ledger opened and the recovery workers started, then the Interledger side
    refused its configuration), so nothing started is left behind.
    """

    async def serve_until_signalled() -> None:
        runner = web.AppRunner(app, handle_signals=False)
        stop = stop_requested()
        try:
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            tune_gc()
            await stop.wait()
        finally:
            await runner.cleanup()

    run(serve_until_signalled())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "devchain":
        from devchain.cli import main as devchain_main

        result = devchain_main(args[1:])
        return int(result or 0)
    parser = argparse.ArgumentParser(prog="dassie", description="The payment node.")
    parser.add_argument("command", choices=["serve", "devchain"])
    parsed = parser.parse_args(args)
    if parsed.command == "serve":
        return serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
