"""Paid versus unpaid ingest through the whole path, in one run.

Starts a dev chain, a Dassie node, a paid relay (every event's claim verified by
the node over the RPC link) and an unpaid relay (``PAYMENTS_ENABLED=false``),
each a separate process on free ports. Clients open one channel per in-flight
slot, sign cumulative claims and events up front (timed separately), then
publish over several WebSockets and wait for every OK. Prints a table.

    .venv/bin/python bench/paid_bench.py [--events 4000] [--connections 32] [--slots 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from devchain.accounts import ACCOUNTS
from nostr_pay.chain import Chain
from nostr_pay.devstack import DevStack, Service, StackConfig, http_json, unlimited_settings
from nostr_pay.relay import RelayConnection
from nostr_protocol.event import Event
from nostr_protocol.keys import generate_secret_key, sign_event
from nostream.payments.rpc_client import DassieRpcClient
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim

PRICE = 10**9


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_unpaid_relay(stack: DevStack, root: Path) -> tuple[Service, str]:
    port = free_port()
    env = dict(stack.relay.env)
    env.update(
        RELAY_PORT=str(port),
        NOSTR_CONFIG_DIR=str(root / "unpaid"),
        NOSTR_DATA_DIR=str(root / "unpaid"),
        PAYMENTS_ENABLED="false",
    )
    (root / "unpaid").mkdir(exist_ok=True)
    (root / "unpaid" / "settings.yaml").write_text(
        (root / "nostream" / "settings.yaml").read_text()
    )
    service = Service("nostream-unpaid", stack.relay.argv, env, root / "logs" / "unpaid.log")
    service.start()
    url = f"http://127.0.0.1:{port}/health"
    stack.wait(service, lambda: http_json(url)[0] == 200)
    return service, f"ws://127.0.0.1:{port}"


async def publish_all(url: str, lanes: list[list[Event]], connections: int) -> tuple[float, int]:
    """Publish each lane in order (one in flight per lane); lanes share ``connections`` sockets."""
    conns = [RelayConnection(url, timeout=120) for _ in range(connections)]
    for conn in conns:
        await conn.__aenter__()
    accepted = 0
    refused: dict[str, int] = {}

    async def lane(conn: RelayConnection, events: list[Event]) -> None:
        nonlocal accepted
        for event in events:
            ok = await conn.publish(event)
            if ok.accepted:
                accepted += 1
            else:
                refused[ok.message] = refused.get(ok.message, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(lane(conns[i % connections], ev) for i, ev in enumerate(lanes)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.__aexit__(None, None, None)
    if refused:
        print(f"  refused at {url}: {refused}", file=sys.stderr)
    return elapsed, accepted


async def verify_all(stack: DevStack, lanes: list[list[dict[str, str]]]) -> tuple[float, int]:
    """Call payment.verifyPaymentClaim directly, one call in flight per lane."""
    rpc = DassieRpcClient(stack.config.node_rpc_url, stack.rpc_token, timeout=120)
    await rpc.start()
    await rpc.wait_connected()
    accepted = 0

    async def lane(calls: list[dict[str, str]]) -> None:
        nonlocal accepted
        for params in calls:
            answer = await rpc.call("payment.verifyPaymentClaim", params)
            accepted += bool(answer.get("valid"))

    started = time.perf_counter()
    await asyncio.gather(*(lane(calls) for calls in lanes))
    elapsed = time.perf_counter() - started
    await rpc.close()
    return elapsed, accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--slots", type=int, default=32, help="events in flight (one channel each)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="paid-bench-"))
    config = StackConfig(
        root=root,
        chain_port=free_port(),
        node_port=free_port(),
        relay_port=free_port(),
        relay_settings=unlimited_settings(),
        relay_env={"PRICING_STORE_EVENT": str(PRICE), "LOG_LEVEL": "WARNING"},
    )
    stack = DevStack(config)
    print(f"starting the stack in {root} ...", file=sys.stderr)
    stack.start()
    unpaid: Service | None = None
    try:
        unpaid, unpaid_url = start_unpaid_relay(stack, root)
        chain = Chain(config.chain_url, stack.factory)
        key = bytes.fromhex(ACCOUNTS[1][1][2:])
        per_lane = -(-args.events // args.slots)
        t0 = time.perf_counter()
        channels = [
            bytes.fromhex(
                chain.open_channel(
                    key, stack.relay_address, PRICE * (2 * per_lane + 1), int(time.time()) + 86400
                )[2:]
            )
            for _ in range(args.slots)
        ]
        open_s = time.perf_counter() - t0
        author = generate_secret_key()
        t0 = time.perf_counter()
        paid_lanes: list[list[Event]] = []
        for lane, channel in enumerate(channels):
            events = []
            for n in range(1, per_lane + 1):
                claim = Claim(channel, PRICE * n, n, sign_claim(key, channel, PRICE * n, n))
                tag = PaymentClaim(claim, "ETH").to_tag()
                events.append(sign_event(author, kind=1, content=f"paid {lane}/{n}", tags=[tag]))
            paid_lanes.append(events)
        sign_s = time.perf_counter() - t0
        unpaid_lanes = [
            [sign_event(author, kind=1, content=f"free {lane}/{n}") for n in range(per_lane)]
            for lane in range(args.slots)
        ]
        total = per_lane * args.slots
        results = []
        for name, url, lanes in (
            ("unpaid (PAYMENTS_ENABLED=false)", unpaid_url, unpaid_lanes),
            ("paid (claim verified by node)", config.relay_url, paid_lanes),
        ):
            elapsed, accepted = asyncio.run(publish_all(url, lanes, args.connections))
            results.append((name, total, accepted, elapsed))
        # The node alone: the same claims' successors straight over the RPC link.
        rpc_lanes = [
            [
                {
                    **PaymentClaim(
                        Claim(channel, PRICE * n, n, sign_claim(key, channel, PRICE * n, n)), "ETH"
                    ).to_rpc_params(),
                    "minAmount": str(PRICE),
                }
                for n in range(per_lane + 1, 2 * per_lane + 1)
            ]
            for channel in channels
        ]
        elapsed, accepted = asyncio.run(verify_all(stack, rpc_lanes))
        results.append(("node only: verifyPaymentClaim RPC", total, accepted, elapsed))
        print()
        print(
            f"{args.slots} events in flight over {args.connections} WebSockets, "
            f"{os.cpu_count()} CPUs; all services on this machine"
        )
        print(f"{'ingest':34} {'events':>7} {'accepted':>9} {'seconds':>8} {'events/s':>9}")
        for name, n, accepted, elapsed in results:
            print(f"{name:34} {n:7d} {accepted:9d} {elapsed:8.2f} {n / elapsed:9.0f}")
        print(
            f"{'client: sign claim + event':34} {total:7d} {'':9} {sign_s:8.2f} "
            f"{total / sign_s:9.0f}"
        )
        print(
            f"{'client: open channel on chain':34} {args.slots:7d} {'':9} {open_s:8.2f} "
            f"{args.slots / open_s:9.0f}"
        )
    finally:
        if unpaid is not None:
            unpaid.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
