"""ILP packets per second through one dassie node: Prepare -> Fulfill between two BTP peers.

Starts ``dassie serve`` as a subprocess with two BTP peers (``alice``, ``bob``) that
dial in. ``alice`` sends Prepares to ``test.bob.x`` keeping WINDOW in flight, ``bob``
fulfills each; every packet goes through the node's ledger (a pending transfer,
then posted, durable in SQLite). If ``npm install ilp-connector`` works here, the
same load runs through the JavaScript reference connector for comparison.

Run: ``.venv/bin/python bench/ilp_bench.py [--packets N] [--window W]``
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from interledger import btp
from interledger.packet import Fulfill, Prepare, decode_packet, encode_packet

ROOT = Path(__file__).resolve().parent.parent
ALICE_TOKEN = "alice-token-0123456789abcdef"
BOB_TOKEN = "bob-token-0123456789abcdefgh"
FULFILLMENT = hashlib.sha256(b"bench").digest()
CONDITION = hashlib.sha256(FULFILLMENT).digest()


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


async def fulfiller(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Bob: answer every Prepare with the fulfillment."""
    reply_ilp = encode_packet(Fulfill(FULFILLMENT, b""))
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY:
            break
        packet = btp.decode_btp(msg.data)
        if isinstance(packet, btp.BtpMessage):
            reply = btp.BtpResponse(packet.request_id, (btp.ProtocolData("ilp", 0, reply_ilp),))
            await ws.send_bytes(btp.encode_btp(reply))


async def drive(alice_url: str, bob_url: str, packets: int, window: int) -> tuple[float, int]:
    """Send ``packets`` Prepares from alice to bob; returns (seconds, fulfilled)."""
    async with aiohttp.ClientSession() as http:
        bob = await connect(http, bob_url, BOB_TOKEN, "bob")
        alice = await connect(http, alice_url, ALICE_TOKEN, "alice")
        bob_task = asyncio.create_task(fulfiller(bob))
        waiting: dict[int, asyncio.Future[bool]] = {}

        async def reader() -> None:
            async for msg in alice:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                packet = btp.decode_btp(msg.data)
                future = waiting.pop(packet.request_id, None)
                if future is None:
                    continue
                ok = False
                if isinstance(packet, btp.BtpResponse) and packet.protocol_data:
                    ok = isinstance(decode_packet(packet.protocol_data[0].data), Fulfill)
                future.set_result(ok)

        read_task = asyncio.create_task(reader())
        slots = asyncio.Semaphore(window)
        loop = asyncio.get_running_loop()
        fulfilled = 0

        async def one(rid: int) -> None:
            nonlocal fulfilled
            async with slots:
                prepare = Prepare(
                    1, datetime.now(UTC) + timedelta(seconds=30), CONDITION, "test.bob.x", b""
                )
                future: asyncio.Future[bool] = loop.create_future()
                waiting[rid] = future
                msg = btp.BtpMessage(rid, (btp.ProtocolData("ilp", 0, encode_packet(prepare)),))
                await alice.send_bytes(btp.encode_btp(msg))
                if await future:
                    fulfilled += 1

        # Warm up (links, accounts), then measure.
        await asyncio.gather(*(one(i) for i in range(2, 2 + min(200, packets))))
        fulfilled = 0
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(1000, 1000 + packets)))
        elapsed = time.perf_counter() - start
        read_task.cancel()
        bob_task.cancel()
        await alice.close()
        await bob.close()
        return elapsed, fulfilled


def start_dassie(tmp: Path, port: int) -> subprocess.Popen[bytes]:
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
    exe = Path(sys.executable).with_name("dassie")
    return subprocess.Popen(
        [str(exe), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


JS_CONNECTOR = """
const Connector = require('ilp-connector')
const connector = Connector.createApp({
  ilpAddress: 'test.node', backend: 'one-to-one', spread: 0, store: 'memory',
  accounts: {
    alice: { relation: 'child', assetCode: 'ETH', assetScale: 9, plugin: 'ilp-plugin-btp',
             options: { listener: { port: PORT_A, secret: 'ALICE' } } },
    bob: { relation: 'child', assetCode: 'ETH', assetScale: 9, plugin: 'ilp-plugin-btp',
           options: { listener: { port: PORT_B, secret: 'BOB' } } },
  },
  routes: [{ targetPrefix: 'test.bob', peerId: 'bob' }],
})
connector.listen()
  .then(() => console.log('ready'))
  .catch(e => { console.error(e); process.exit(1) })
"""


def run_js(packets: int, window: int, workdir: Path) -> tuple[float, int] | str:
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
            drive(f"ws://127.0.0.1:{port_a}", f"ws://127.0.0.1:{port_b}", packets, window)
        )
    except Exception as exc:  # report in the table rather than crash
        return f"ilp-connector run failed: {exc!r}"[:300]
    finally:
        proc2.terminate()
        proc2.wait(10)


async def echo_server(port: int) -> None:
    """A BTP endpoint that fulfills every Prepare at once: the load generator's ceiling."""
    from aiohttp import web

    reply_ilp = encode_packet(Fulfill(FULFILLMENT, b""))

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:
            packet = btp.decode_btp(msg.data)
            entry = btp.find_protocol(packet.protocol_data, "ilp")
            data = (btp.ProtocolData("ilp", 0, reply_ilp),) if entry else ()
            if entry is not None:
                decode_packet(entry.data)  # parse it, as a connector would
            await ws.send_bytes(btp.encode_btp(btp.BtpResponse(packet.request_id, data)))
        return ws

    app = web.Application()
    app.router.add_get("/btp", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def run_echo(packets: int, window: int) -> tuple[float, int] | str:
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


def row(name: str, result: tuple[float, int] | str, packets: int) -> tuple[str, str, str]:
    if isinstance(result, str):
        return name, "-", result
    elapsed, fulfilled = result
    return name, f"{fulfilled / elapsed:,.0f}", f"{fulfilled}/{packets} fulfilled in {elapsed:.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--skip-js", action="store_true")
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo_server(args.echo))
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc = start_dassie(tmp, port)
        try:
            url = f"ws://127.0.0.1:{port}/btp"
            ours = asyncio.run(drive(url, url, args.packets, args.window))
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
            if proc.returncode not in (0, -15):
                print(err.decode()[-2000:], file=sys.stderr)
        js_dir = Path(os.environ.get("ILP_BENCH_NPM_DIR", tmp / "npm"))
        js_dir.mkdir(parents=True, exist_ok=True)
        js: tuple[float, int] | str = "skipped (--skip-js)"
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
    print(f"{'connector'.ljust(width)} | {'packets/s':>10} | detail")
    print(f"{'-' * width}-|-{'-' * 10}-|-------")
    for name, rate, detail in rows:
        print(f"{name.ljust(width)} | {rate:>10} | {detail}")
    if not isinstance(ours, str) and not isinstance(js, str):
        ratio = (ours[1] / ours[0]) / (js[1] / js[0])
        print(f"ratio dassie / ilp-connector: {ratio:.2f}")
    else:
        print("ratio: n/a (ilp-connector did not run)")
    if not isinstance(ours, str):
        rate = ours[1] / ours[0]
        print(f"target >= 5,000 packets/s: {'met' if rate >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
