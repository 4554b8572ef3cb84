"""``nostream serve``: run the relay until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .config import ConfigError, Settings, load_settings
from .storage.base import StorageError

log = logging.getLogger("nostream")


class StartupError(RuntimeError):
    """A part of the relay (storage, Redis, the listening socket) failed to start."""


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections (Python's default is 700).

Each ingested event allocates a few dozen short-lived objects (a task,
futures, the parsed event), so with the default the collector runs every few
events and, with its older generations, took ~5% of the relay's CPU."""


def tune_gc() -> None:
    """Move what startup allocated out of the collector's sight and collect less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve(settings: Settings) -> None:
    from .backends import build_server

    server = build_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except (ConfigError, StorageError):
        await server.stop()
        raise
    except Exception as exc:
        await server.stop()
        raise StartupError(f"{type(exc).__name__}: {exc}") from exc
    tune_gc()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (its sockets and callbacks are C,
    which cuts the cost of writing an event to many subscribers), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nostream", description="The paid Nostr relay.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the relay")
    run.add_argument("--host", help="listen address (default RELAY_HOST or 0.0.0.0)")
    run.add_argument("--port", type=int, help="listen port (default RELAY_PORT or 8008)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        from .payments import PaymentConfigError

        settings = load_settings()
        if args.host or args.port is not None:
            from dataclasses import replace

            settings = replace(
                settings,
                host=args.host or settings.host,
                port=settings.port if args.port is None else args.port,
            )
        run_event_loop(serve(settings))
    except (ConfigError, PaymentConfigError) as exc:
        print(f"nostream: configuration error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"nostream: storage unavailable: {exc}", file=sys.stderr)
        return 1
    except (StartupError, OSError) as exc:
        print(f"nostream: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
