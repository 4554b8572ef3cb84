"""``nostream serve``: run the relay until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from service_runtime import run, stop_requested, tune_gc

from .config import ConfigError, Settings, load_settings
from .storage.base import StorageError

log = logging.getLogger("nostream")


class StartupError(RuntimeError):
    """A part of the relay (storage, Redis, the listening socket) failed to start."""


async def serve(settings: Settings) -> None:
    from .backends import build_server

    server = build_server(settings)
    stop = stop_requested()
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nostream", description="The paid Nostr relay.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_command = sub.add_parser("serve", help="run the relay")
    serve_command.add_argument("--host", help="listen address (default RELAY_HOST or 0.0.0.0)")
    serve_command.add_argument("--port", type=int, help="listen port (default RELAY_PORT or 8008)")
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
        run(serve(settings))
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
