"""ILP packets per second through one dassie node: Prepare -> Fulfill between two BTP peers.

Starts ``dassie serve`` as a subprocess with two BTP peers (``alice``, ``bob``) that
dial in over WebSocket (token auth). ``alice`` sends 1-unit Prepares to ``test.bob.x``
(expiring 30 s after they are sent) keeping WINDOW in flight: each answer releases
the next Prepare. ``bob`` fulfills every Prepare it gets. Every packet goes through
the node's ledger (a pending transfer, then posted; the post is durable in SQLite
before the Fulfill goes back to alice). A packet counts once alice has its Fulfill.

Measured: fulfilled packets / wall time of the timed run (after a 200-packet warm-up),
and the connector process's CPU time (user + system, all threads, from /proc) per
packet over the same run. The client side is kept cheap so that it is not what is
measured: alice and bob run in this process on one event loop; their BTP frames are
spliced from pre-encoded bytes (Prepare re-encoded when its expiry's millisecond
changes; bob's Fulfill answer gets the request id spliced in), and alice checks each
answer by comparing it to the expected Fulfill bytes (anything else is decoded and
counted by reject code). The node does all its usual work on every packet.

If ``npm install ilp-connector`` works here (``ILP_BENCH_NPM_DIR`` keeps the install
between runs), the same load runs through the JavaScript reference connector for
comparison; its per-account rate limit (by default 10,000 packets a minute, T05
beyond) is raised out of the way, as dassie has none. The "load generator ceiling"
row runs the same client against a peer in another process that answers every
Prepare itself: the most this client can measure.

Run: ``flock /tmp/bench.lock .venv/bin/python bench/ilp_bench.py [--packets N] [--window W]
[--skip-js] [--profile FILE]`` (``--profile`` runs the node under cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from interledger import btp
from interledger.packet import Fulfill, Prepare, Reject, decode_packet, encode_packet

ROOT = Path(__file__).resolve().parent.parent
ALICE_TOKEN = "alice-token-0123456789abcdef"
BOB_TOKEN = "bob-token-0123456789abcdefgh"
FULFILLMENT = hashlib.sha256(b"bench").digest()
CONDITION = hashlib.sha256(FULFILLMENT).digest()
FULFILL_ILP = encode_packet(Fulfill(FULFILLMENT, b""))
REPLY_TAIL = btp.encode_btp(btp.BtpResponse(0, (btp.ProtocolData("ilp", 0, FULFILL_ILP),)))[5:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def connect(
    http: aiohttp.ClientSession, url: str, token: str, name: str
) -> aiohttp.ClientWebSocketResponse:
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = await http.ws_connect(url, max_msg_size=1 << 20)
            break
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    await ws.send_bytes(btp.encode_btp(btp.auth_message(1, token, name)))
    answer = btp.decode_btp((await ws.receive()).data)
    if not isinstance(answer, btp.BtpResponse):
        raise SystemExit(f"auth as {name} refused: {answer}")
    return ws


def fulfill_reply(message: bytes) -> bytes | None:
    """Bob's answer to a BTP message: a BtpResponse carrying the Fulfill, same request id.

    Built by splicing the request id into a pre-encoded reply (the client side's
    work is kept small so the node is what the run measures).
    """
    if len(message) < 5 or message[0] != btp.BtpType.MESSAGE:
        return None
    return b"\x01" + message[1:5] + REPLY_TAIL


class PrepareTemplate:
    """Alice's Prepare as BTP bytes; re-encoded when the millisecond of expiry changes."""

    def __init__(self) -> None:
        self._millis = -1
        self._tail = b""

    def message(self, request_id: int) -> bytes:
        now = time.time()
        millis = int(now * 1000)
        if millis != self._millis:
            expires = datetime.fromtimestamp(now, UTC) + timedelta(seconds=30)
            prepare = Prepare(1, expires, CONDITION, "test.bob.x", b"")
            msg = btp.BtpMessage(0, (btp.ProtocolData("ilp", 0, encode_packet(prepare)),))
            self._tail = btp.encode_btp(msg)[5:]
            self._millis = millis
        return b"\x06" + request_id.to_bytes(4, "big") + self._tail


async def fulfiller(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Bob: answer every Prepare with the fulfillment."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY:
            break
        reply = fulfill_reply(msg.data)
        if reply is not None:
            await ws.send_bytes(reply)


def outcome(response: bytes) -> str:
    """``"fulfill"`` if a BTP answer carries a Fulfill (exact match first), else what it is."""
    if response[5:] == REPLY_TAIL and response[0] == btp.BtpType.RESPONSE:
        return "fulfill"
    packet = btp.decode_btp(response)
    if not isinstance(packet, btp.BtpResponse) or not packet.protocol_data:
        return type(packet).__name__
    answer = decode_packet(packet.protocol_data[0].data)
    if isinstance(answer, Reject):
        return f"{answer.code} {answer.message[:40]}"
    return "fulfill" if isinstance(answer, Fulfill) else "prepare"


@dataclass(frozen=True)
class Result:
    elapsed: float
    fulfilled: int
    cpu: float | None
    """CPU seconds the connector process used during the timed run (all its threads)."""
    failures: Counter[str]
    """What came back instead of a Fulfill."""
    client_cpu: float
    """CPU seconds this (client) process used during the timed run."""


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    alice_url: str, bob_url: str, packets: int, window: int, pid: int | None = None
) -> Result:
    """Send ``packets`` Prepares from alice to bob, ``window`` in flight.

    Alice keeps ``window`` Prepares outstanding: each answer (read by request id)
    releases the next Prepare. A packet counts if its answer is a Fulfill. ``pid``
    is the connector's process, whose CPU time over the timed run is reported.
    """
    async with aiohttp.ClientSession() as http:
        bob = await connect(http, bob_url, BOB_TOKEN, "bob")
        alice = await connect(http, alice_url, ALICE_TOKEN, "alice")
        bob_task = asyncio.create_task(fulfiller(bob))
        template = PrepareTemplate()

        failures: Counter[str] = Counter()

        async def run(first_id: int, count: int) -> tuple[float, int]:
            outstanding: set[int] = set()
            next_id = first_id
            last_id = first_id + count
            fulfilled = 0
            start = time.perf_counter()
            for _ in range(min(window, count)):
                outstanding.add(next_id)
                await alice.send_bytes(template.message(next_id))
                next_id += 1
            while outstanding:
                msg = await alice.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"alice's link closed: {msg.type!r}")
                data: bytes = msg.data
                request_id = int.from_bytes(data[1:5], "big")
                if request_id not in outstanding:
                    continue
                outstanding.discard(request_id)
                answer = outcome(data)
                if answer == "fulfill":
                    fulfilled += 1
                else:
                    failures[answer] += 1
                if next_id < last_id:
                    outstanding.add(next_id)
                    await alice.send_bytes(template.message(next_id))
                    next_id += 1
            return time.perf_counter() - start, fulfilled

        # Warm up (links, accounts), then measure.
        await run(2, min(200, packets))
        failures.clear()
        cpu_before, client_before = cpu_seconds(pid), time.process_time()
        elapsed, fulfilled = await run(1000, packets)
        cpu_after, client_after = cpu_seconds(pid), time.process_time()
        bob_task.cancel()
        await alice.close()
        await bob.close()
        cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        return Result(elapsed, fulfilled, cpu, failures, client_after - client_before)


def start_dassie(tmp: Path, port: int, profile: str | None = None) -> subprocess.Popen[bytes]:
    peers = [
        {"name": "alice", "token": ALICE_TOKEN, "routes": ["test.alice"]},
        {"name": "bob", "token": BOB_TOKEN, "routes": ["test.bob"]},
    ]
    env = {
        **os.environ,
        "RPC_AUTH_TOKEN": "b" * 40,
        "LEDGER_DB_PATH": str(tmp / "ledger.db"),
        "DASSIE_PORT": str(port),
        "DASSIE_HOST": "127.0.0.1",
        "DASSIE_ILP_ADDRESS": "test.node",
        "NODE_ENV": "development",
        "ILP_PEERS": json.dumps(peers),
    }
    command = [str(Path(sys.executable).with_name("dassie")), "serve"]
    if profile:  # SIGTERM stops the app cleanly, so cProfile writes its stats
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "dassie.cli", "serve"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


JS_CONNECTOR = """
const Connector = require('ilp-connector')
const connector = Connector.createApp({
  ilpAddress: 'test.node', backend: 'one-to-one', spread: 0, store: 'memory',
  accounts: {
    alice: { relation: 'child', assetCode: 'ETH', assetScale: 9, plugin: 'ilp-plugin-btp',
             options: { listener: { port: PORT_A, secret: 'ALICE' } },
             rateLimit: { refillPeriod: 1000, refillCount: 1000000000, capacity: 1000000000 } },
    bob: { relation: 'child', assetCode: 'ETH', assetScale: 9, plugin: 'ilp-plugin-btp',
           options: { listener: { port: PORT_B, secret: 'BOB' } } },
  },
  routes: [{ targetPrefix: 'test.bob', peerId: 'bob' }],
})
connector.listen()
  .then(() => console.log('ready'))
  .catch(e => { console.error(e); process.exit(1) })
"""


def run_js(packets: int, window: int, workdir: Path) -> Result | str:
    """Run the same load through ilp-connector (npm); a string explains why it could not."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found"
    mod = workdir / "node_modules" / "ilp-connector"
    if not mod.exists():
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "ilp-connector", "ilp-plugin-btp"],
            cwd=workdir,
            capture_output=True,
            timeout=600,
        )
        if proc.returncode != 0 or not mod.exists():
            return "npm install ilp-connector failed: " + proc.stderr.decode()[-300:].strip()
    port_a, port_b = free_port(), free_port()
    script = workdir / "connector.js"
    script.write_text(
        JS_CONNECTOR.replace("PORT_A", str(port_a))
        .replace("PORT_B", str(port_b))
        .replace("ALICE", ALICE_TOKEN)
        .replace("BOB", BOB_TOKEN)
    )
    proc2 = subprocess.Popen(
        ["node", str(script)], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc2.stdout is not None
        # Its log goes to stdout; go once both BTP listeners are up (it waits for peers).
        seen = b""
        while seen.count(b"listening for BTP connections") < 2:
            line = proc2.stdout.readline()
            if not line:
                return f"ilp-connector did not start: {seen.decode()[-300:]}"
            seen += line
        threading.Thread(target=proc2.stdout.read, daemon=True).start()  # keep draining
        # One BTP listener per account: alice and bob connect to their own ports.
        return asyncio.run(
            drive(
                f"ws://127.0.0.1:{port_a}",
                f"ws://127.0.0.1:{port_b}",
                packets,
                window,
                proc2.pid,
            )
        )
    except Exception as exc:  # report in the table rather than crash
        return f"ilp-connector run failed: {exc!r}"[:300]
    finally:
        proc2.terminate()
        proc2.wait(10)


async def echo_server(port: int) -> None:
    """A BTP endpoint that fulfills every Prepare at once: the load generator's ceiling."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:
            packet = btp.decode_btp(msg.data)
            if packet.request_id == 1:  # auth
                await ws.send_bytes(btp.encode_btp(btp.BtpResponse(1)))
                continue
            reply = fulfill_reply(msg.data)  # what bob answers, with no node in between
            if reply is not None:
                await ws.send_bytes(reply)
        return ws

    app = web.Application()
    app.router.add_get("/btp", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def run_echo(packets: int, window: int) -> Result | str:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--echo", str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if b"ready" not in proc.stdout.readline():
            return "echo server did not start"
        url = f"ws://127.0.0.1:{port}/btp"
        return asyncio.run(drive(url, url, packets, window))
    finally:
        proc.terminate()
        proc.wait(10)


def row(name: str, result: Result | str, packets: int) -> tuple[str, str, str, str]:
    if isinstance(result, str):
        return name, "-", "-", result
    rate = result.fulfilled / result.elapsed
    cpu = "-" if result.cpu is None else f"{result.cpu / packets * 1e6:,.0f}"
    detail = (
        f"{result.fulfilled}/{packets} fulfilled in {result.elapsed:.2f}s, "
        f"client CPU {result.client_cpu / packets * 1e6:.0f} us/pkt"
    )
    if result.failures:
        (common, times), *_ = result.failures.most_common(1)
        detail += f"; others: {sum(result.failures.values())}, most often {common!r} x{times}"
    return name, f"{rate:,.0f}", cpu, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--skip-js", action="store_true")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the node under cProfile, stats written to FILE"
    )
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo_server(args.echo))
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc = start_dassie(tmp, port, args.profile)
        try:
            url = f"ws://127.0.0.1:{port}/btp"
            ours = asyncio.run(drive(url, url, args.packets, args.window, proc.pid))
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
            if proc.returncode not in (0, -15):
                print(err.decode()[-2000:], file=sys.stderr)
        js_dir = Path(os.environ.get("ILP_BENCH_NPM_DIR", tmp / "npm"))
        js_dir.mkdir(parents=True, exist_ok=True)
        js: Result | str = "skipped (--skip-js)"
        if not args.skip_js:
            js = run_js(args.packets, args.window, js_dir)

    ceiling = run_echo(args.packets, args.window)
    rows = [
        row("load generator ceiling (echo peer, no connector)", ceiling, args.packets),
        row("dassie (Python, SQLite ledger)", ours, args.packets),
        row("ilp-connector (npm, memory store)", js, args.packets),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"ILP Prepare->Fulfill through one connector, {args.packets} packets, "
        f"{args.window} in flight"
    )
    print(f"{'connector'.ljust(width)} | {'packets/s':>10} | {'CPU us/pkt':>10} | detail")
    print(f"{'-' * width}-|-{'-' * 10}-|-{'-' * 10}-|-------")
    for name, rate, cpu, detail in rows:
        print(f"{name.ljust(width)} | {rate:>10} | {cpu:>10} | {detail}")
    print("(CPU us/pkt: the connector process's user+system time over the timed run / packets)")
    if not isinstance(ours, str) and not isinstance(js, str):
        ratio = (ours.fulfilled / ours.elapsed) / (js.fulfilled / js.elapsed)
        print(f"ratio dassie / ilp-connector: {ratio:.2f}")
    else:
        print("ratio: n/a (ilp-connector did not run)")
    if not isinstance(ours, str):
        ours_rate = ours.fulfilled / ours.elapsed
        print(f"target >= 5,000 packets/s: {'met' if ours_rate >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
