"""Paid versus unpaid ingest through the whole path, in one run.

Starts a dev chain, a Dassie node, a paid relay (every event's claim verified by
the node over the RPC link) and an unpaid relay (``PAYMENTS_ENABLED=false``),
each a separate process on free ports. Clients open one channel per in-flight
slot (lane), sign cumulative claims and events up front (timed separately), then
publish over several WebSockets and wait for every OK. Prints a table.

What a row measures: from the first EVENT written until the last OK read, every
event of every lane published in order with one event in flight per lane (the
next leaves when the relay's OK for the previous arrives), lanes spread over
``--connections`` WebSockets; each relay checks, charges and stores every event
as it would for any client. The client is lean so that it takes little of the
shared CPUs: each EVENT frame (JSON text, WebSocket framing and masking) is
built before the timed window, and a small asyncio protocol writes frames and
reads OKs (every frame released by one socket read leaves in one write). The
"node only" row calls ``payment.verifyPaymentClaim`` for the next claims of the
same channels straight over the relay's RPC client, one call in flight per lane.

The default load is 128 lanes over 32 WebSockets (four events in flight per socket;
``relay_bench.py`` drives 256 for unpaid ingest), both rows alike: the rate a relay
sustains under load. With fewer lanes the rows measure batching more than capacity:
at 32 lanes over 32 sockets every stage (socket reads and writes, the RPC frames, both
SQLite commits, the recovery worker) handles a few events at a time, and the CPU per
paid event rises from ~550 to ~690 µs (``--slots 32`` shows it).

Channels are opened before the timed rows. The dev stack's node follows the chain
every second (``SETTLEMENT_POLL_INTERVAL=1``) and takes a channel's state from its
``ChannelOpened`` log, so by the paid row it normally knows every channel and no
claim waits for a chain lookup (before, the first claim on each channel cost a
``getChannel`` call: about 15 ms of CPU over the node and the chain, 32 of them
in a default run). A channel not yet learnt is looked up as before.

The second table is the CPU time (user + system) spent per event, during each
row, by this process (client), the relay, the node and the chain, each with all
of its threads and child processes. The third splits the relay's and the node's
share by thread, from ``/proc/<pid>/task``: the event loop (main thread), the
other threads (relay: signature checks and SQLite; node: the ledger writer) and
the session's other processes (node: signer recovery workers).

    .venv/bin/python bench/paid_bench.py [--events 8000] [--connections 32] [--slots 128]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from wsframes import client_frame

from devchain.accounts import ACCOUNTS
from nostr_pay.chain import Chain
from nostr_pay.devstack import DevStack, Service, StackConfig, http_json, unlimited_settings
from nostr_protocol.event import Event
from nostr_protocol.keys import generate_secret_key, sign_event
from nostream.payments.rpc_client import DassieRpcClient
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim

PRICE = 10**9


def session_cpu(leader: int) -> float:
    """CPU seconds (user + system) so far of every live process in ``leader``'s session.

    Services start in their own session, so this covers a node's worker processes too.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is field 3 (state); session is field 6, utime/stime fields 14/15.
        if int(fields[3]) == leader:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def split_cpu(leader: int) -> dict[str, float]:
    """CPU seconds so far of ``leader``'s session, split: ``loop`` (the leader's main
    thread, its event loop), ``threads`` (the leader's other threads) and ``procs``
    (every other process of the session, e.g. a node's recovery workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    split = {"loop": 0.0, "threads": 0.0, "procs": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{entry}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{entry}/task/{tid}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) != leader:
                break  # not in the session: neither are its other threads
            spent = (int(fields[11]) + int(fields[12])) / tick
            if int(entry) != leader:
                split["procs"] += spent
            elif int(tid) == leader:
                split["loop"] += spent
            else:
                split["threads"] += spent
    return split


class CpuMeter:
    """CPU seconds spent by this process and by each service, between start() and stop()."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services
        self._start: dict[str, float] = {}
        self._start_split: dict[str, dict[str, float]] = {}
        self.spent: dict[str, float] = {}
        self.split: dict[str, dict[str, float]] = {}
        """Per service: CPU seconds of its loop thread, other threads, other processes."""

    def _now(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        now = {"client": time.process_time()}
        splits = {}
        for name, service in self.services.items():
            assert service.process is not None
            now[name] = session_cpu(service.process.pid)
            splits[name] = split_cpu(service.process.pid)
        return now, splits

    def start(self) -> None:
        self._start, self._start_split = self._now()

    def stop(self) -> dict[str, float]:
        end, splits = self._now()
        self.spent = {name: end[name] - self._start[name] for name in end}
        self.split = {
            name: {part: spent - self._start_split[name][part] for part, spent in parts.items()}
            for name, parts in splits.items()
        }
        return self.spent


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


class Lanes:
    """Events to publish, per lane, as ready-to-write WebSocket frames; tallies the OKs."""

    def __init__(self, lanes: list[list[Event]]) -> None:
        self.frames = [
            [client_frame(b'["EVENT",' + event.to_json() + b"]") for event in events]
            for events in lanes
        ]
        self.lane_of = {event.id: i for i, events in enumerate(lanes) for event in events}
        self.next = [0] * len(lanes)
        self.open = sum(1 for events in lanes if events)
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.done: asyncio.Future[None] | None = None

    def first(self, lane: int) -> bytes:
        self.next[lane] = 1
        return self.frames[lane][0]

    def answered(self, event_id: str, accepted: bool, message: str) -> bytes | None:
        """Count an OK; the frame to send next on its lane, if any."""
        lane = self.lane_of.pop(event_id, None)
        if lane is None:
            return None
        if accepted:
            self.accepted += 1
        else:
            self.refused[message] = self.refused.get(message, 0) + 1
        index = self.next[lane]
        if index < len(self.frames[lane]):
            self.next[lane] = index + 1
            return self.frames[lane][index]
        self.open -= 1
        if self.open == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)
        return None


class Publisher(asyncio.Protocol):
    """A lean WebSocket client: writes pre-built EVENT frames, reads OKs, answers pings.

    Each OK releases the next event of the same lane; every frame released by one
    read of the socket leaves in one write.
    """

    def __init__(self, lanes: Lanes, mine: list[int], host: str) -> None:
        self.lanes = lanes
        self.mine = mine
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET / HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        done = self.lanes.done
        if done is not None and not done.done() and self.lanes.open:
            done.set_exception(ConnectionError(f"the relay closed a connection: {exc}"))

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.lanes.first(lane) for lane in self.mine))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded.done():
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded.set_result(None)
        out: list[bytes] = []
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if end - start < length:
                break
            payload = buffer[start : start + length]
            pos = start + length
            if opcode == 0x1:
                message = orjson.loads(payload)
                if message[0] == "OK":
                    frame = self.lanes.answered(message[1], message[2], message[3])
                    if frame is not None:
                        out.append(frame)
            elif opcode == 0x9:
                out.append(client_frame(payload, 0xA))
            elif opcode == 0x8:
                assert self.transport is not None
                self.transport.close()
                return
        self.buffer = buffer[pos:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))


async def publish_all(url: str, work: Lanes, connections: int) -> tuple[float, int]:
    """Publish each lane in order, one event in flight per lane; lanes share ``connections``.

    Timed: from the first EVENT written until the last OK is read. Not timed:
    connecting, and building the EVENT frames (done by :class:`Lanes` beforehand).
    """
    host, _, port = urlsplit(url).netloc.partition(":")
    loop = asyncio.get_running_loop()
    publishers = []
    for c in range(connections):
        mine = list(range(c, len(work.frames), connections))
        _, publisher = await loop.create_connection(
            functools.partial(Publisher, work, mine, f"{host}:{port}"), host, int(port)
        )
        publishers.append(publisher)
    for publisher in publishers:
        await publisher.upgraded
    work.done = loop.create_future()
    started = time.perf_counter()
    for publisher in publishers:
        if publisher.mine:
            publisher.start()
    if work.open:
        await asyncio.wait_for(work.done, 600)
    elapsed = time.perf_counter() - started
    for publisher in publishers:
        assert publisher.transport is not None
        publisher.transport.write(client_frame(b"", 0x8))
        publisher.transport.close()
        await publisher.closed
    if work.refused:
        print(f"  refused at {url}: {work.refused}", file=sys.stderr)
    return elapsed, work.accepted


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
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--slots", type=int, default=128, help="events in flight (one channel each)"
    )
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
        cpu_rows = []
        split_rows: list[tuple[str, dict[str, dict[str, float]]]] = []
        for name, url, lanes, relay in (
            ("unpaid (PAYMENTS_ENABLED=false)", unpaid_url, unpaid_lanes, unpaid),
            ("paid (claim verified by node)", config.relay_url, paid_lanes, stack.relay),
        ):
            work = Lanes(lanes)
            meter = CpuMeter({"relay": relay, "node": stack.node, "chain": stack.chain})
            meter.start()
            elapsed, accepted = asyncio.run(publish_all(url, work, args.connections))
            cpu_rows.append((name, meter.stop()))
            split_rows.append((name, meter.split))
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
        meter = CpuMeter({"node": stack.node, "chain": stack.chain})
        meter.start()
        elapsed, accepted = asyncio.run(verify_all(stack, rpc_lanes))
        cpu_rows.append(("node only: verifyPaymentClaim RPC", meter.stop()))
        split_rows.append(("node only: verifyPaymentClaim RPC", meter.split))
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
        print()
        print("CPU per event, microseconds (user + system, all of a service's processes)")
        print(f"{'ingest':34} {'client':>7} {'relay':>7} {'node':>7} {'chain':>7} {'total':>7}")
        for name, spent in cpu_rows:
            cells = [spent.get(p) for p in ("client", "relay", "node", "chain")]
            text = [f"{c / total * 1e6:7.0f}" if c is not None else f"{'-':>7}" for c in cells]
            overall = sum(c for c in cells if c is not None) / total * 1e6
            print(f"{name:34} {' '.join(text)} {overall:7.0f}")
        print()
        print("The same split by thread: each service's event loop (main thread), its other")
        print("threads (relay: signature checks, SQLite; node: ledger writer), other processes")
        print("(node: signer recovery workers)")
        parts = [("relay", "loop"), ("relay", "threads"), ("node", "loop"), ("node", "threads")]
        parts.append(("node", "procs"))
        heads = " ".join(f"{f'{s} {p}':>13}" for s, p in parts)
        print(f"{'ingest':34} {heads}")
        for name, split in split_rows:
            cells = []
            for service, part in parts:
                spent = split.get(service, {}).get(part)
                cells.append(f"{spent / total * 1e6:13.0f}" if spent is not None else f"{'-':>13}")
            print(f"{name:34} {' '.join(cells)}")
    finally:
        if unpaid is not None:
            unpaid.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
