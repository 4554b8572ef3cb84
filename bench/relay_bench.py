#!/usr/bin/env python3
"""Relay benchmark: our ``nostream serve`` against PyPI ``nostr-relay``, side by side.

Measures, for each relay, over real WebSockets on this machine:

* ingest: P publishers sending pre-signed kind-1 events (W in flight each) ->
  events/s acknowledged with OK true, OK latency p50/p99;
* REQ latency (one author + kind 1, limit 100) p50/p99 on a database seeded
  with N events (default 1,000,000; both relays get the same rows, loaded
  straight into their SQLite files / our PostgreSQL with COPY);
* fan-out latency from publishing one event to its arrival at each of S
  subscribers (default 1,000) p50/p99.

For ours it also prints the relay's CPU per acknowledged event during ingest,
by thread (from ``/proc/<pid>/task``: the event loop, ``sig-verify``,
``sqlite-writer``, ``sqlite-ckpt``...), and the bench client's own CPU per event.

The peer is installed into ``bench/.peer-venv`` from the hash-pinned
``bench/requirements-peer.txt`` (never into the project's .venv). Signed seed
events are cached in ``bench/.cache/seed-<N>.sqlite3``.

    .venv/bin/python bench/relay_bench.py --events 20000          # quick
    .venv/bin/python bench/relay_bench.py                         # full (1M)
    .venv/bin/python bench/relay_bench.py --postgres postgresql://u:p@host/db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from coincurve import PrivateKey
from wsframes import client_frame, take_messages, upgrade_request

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
PEER_VENV = HERE / ".peer-venv"
PEER_REQUIREMENTS = HERE / "requirements-peer.txt"
SEED_KEYS = 100
SEED_CHUNK = 5000
NOW = int(time.time())


# -- events -----------------------------------------------------------------------------


class Signer:
    """Signs events for one key quickly (the key objects are built once)."""

    def __init__(self, seed: bytes) -> None:
        self.key = PrivateKey(hashlib.sha256(seed).digest())
        self.pubkey = self.key.public_key_xonly.format().hex()

    def sign(
        self, kind: int, content: str, tags: list[list[str]], created_at: int
    ) -> dict[str, Any]:
        body = orjson.dumps([0, self.pubkey, created_at, kind, tags, content])
        digest = hashlib.sha256(body).digest()
        sig = self.key.sign_schnorr(digest, None)  # type: ignore[arg-type]  # None: deterministic
        return {
            "id": digest.hex(),
            "pubkey": self.pubkey,
            "created_at": created_at,
            "kind": kind,
            "tags": tags,
            "content": content,
            "sig": sig.hex(),
        }


def seed_signers() -> list[Signer]:
    return [Signer(b"bench-seed-%d" % i) for i in range(SEED_KEYS)]


def kind1_authors() -> list[str]:
    """The seed authors whose events are kind 1 (event i is by key i % 100, and is
    kind 1 when i % 10 < 7, so key j writes only kind 1 when j % 10 < 7)."""
    return [s.pubkey for j, s in enumerate(seed_signers()) if j % 10 < 7]


def _seed_chunk(start: int, stop: int, total: int) -> list[tuple[Any, ...]]:
    signers = seed_signers()
    rows = []
    for i in range(start, stop):
        signer = signers[i % SEED_KEYS]
        created_at = NOW - 3600 - (total - i)  # spread over the past, one per second
        if i % 10 < 7:
            kind, tags = 1, [["t", f"topic{i % 50}"]] if i % 3 == 0 else []
            content = f"seed note {i}"
        else:
            kind = 7
            target = hashlib.sha256(b"target-%d" % (i // 2)).hexdigest()
            tags = [["e", target], ["p", signers[(i + 1) % SEED_KEYS].pubkey]]
            content = "+"
        e = signer.sign(kind, content, tags, created_at)
        rows.append(
            (
                bytes.fromhex(e["id"]),
                bytes.fromhex(e["pubkey"]),
                created_at,
                kind,
                orjson.dumps(tags).decode(),
                content,
                bytes.fromhex(e["sig"]),
            )
        )
    return rows


def _seed_chunk_star(args: tuple[int, int, int]) -> list[tuple[Any, ...]]:
    return _seed_chunk(*args)


def ensure_seed(n: int, procs: int) -> Path:
    """A cached SQLite file with ``n`` signed events in table ``seed``."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"seed-{n}.sqlite3"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.execute(
        "CREATE TABLE seed (id BLOB PRIMARY KEY, pubkey BLOB, created_at INTEGER, kind INTEGER,"
        " tags TEXT, content TEXT, sig BLOB)"
    )
    chunks = [(s, min(s + SEED_CHUNK, n), n) for s in range(0, n, SEED_CHUNK)]
    started = time.monotonic()
    done = 0
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        for rows in pool.imap_unordered(_seed_chunk_star, chunks):
            db.executemany("INSERT INTO seed VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            done += len(rows)
            if done % 100_000 < SEED_CHUNK:
                log(f"signed {done}/{n} seed events ({time.monotonic() - started:.0f}s)")
    db.commit()
    db.close()
    tmp.rename(path)
    return path


# -- helpers ----------------------------------------------------------------------------


def dumps(obj: Any) -> str:
    """JSON text for a WebSocket text frame (Nostr messages are text)."""
    return orjson.dumps(obj).decode()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` in milliseconds (inputs in seconds)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] * 1000


async def wait_http(port: int, proc: subprocess.Popen[bytes], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"relay exited with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    await resp.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"relay on port {port} did not answer within {limit}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- a lean WebSocket client -------------------------------------------------------------
#
# aiohttp's client spends ~50 µs of CPU per received message (a WSMessage, a task
# wake-up); with 1,000 subscribers in one process that alone delays the last
# arrival by tens of milliseconds, and with ingest it takes CPU from the relay on
# this 2-core machine. This client is a plain asyncio Protocol: frames to send
# are built and masked before the timed window, received frames are parsed in
# ``data_received`` with the arrival time taken first.


OnMessage = Callable[[bytes, float], None]


class LeanWs(asyncio.Protocol):
    """One client WebSocket: ``on_message(payload, arrival)`` for each text frame."""

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fragments: list[bytes] = []
        self.corked: list[bytes] | None = None

    @classmethod
    async def connect(cls, url: str, on_message: OnMessage) -> LeanWs:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: cls(on_message), host, port)
        assert proto.transport is not None
        proto.transport.write(upgrade_request(host, port, parts.path or "/"))
        await asyncio.wait_for(proto.opened, 30)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, frame: bytes) -> None:
        """Write a frame made by :func:`client_frame` (frames sent while the
        received data is being handled leave together, in one write)."""
        if self.corked is not None:
            self.corked.append(frame)
            return
        assert self.transport is not None
        self.transport.write(frame)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            del buf[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        self.corked = []
        try:
            messages, pings, closed = take_messages(buf, self.fragments)
            for payload in pings:
                self.send(client_frame(payload, 0xA))
            for message in messages:
                self.on_message(message, now)
            if closed and self.transport is not None:
                self.transport.close()
        finally:
            out, self.corked = self.corked, None
            if out and self.transport is not None:
                self.transport.write(b"".join(out))


SO_TIMESTAMPNS = 35
"""Linux's socket option (and control message type) for kernel receive timestamps."""


class StampedSubscriber:
    """A client WebSocket read with ``recvmsg``: a message's arrival time is the
    kernel's receive timestamp of its bytes (``SO_TIMESTAMPNS``, wall clock), so
    it does not depend on when this process gets to read them."""

    def __init__(self, url: str, on_message: OnMessage) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.on_message = on_message
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(upgrade_request(host, port, parts.path or "/"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the upgrade")
            head += chunk
        status, _, _ = head.partition(b"\r\n")
        if b" 101 " not in status:
            raise ConnectionError(status.decode(errors="replace"))
        self.buffer = bytearray(head.split(b"\r\n\r\n", 1)[1])
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.fragments: list[bytes] = []
        self._deliver(time.time())

    def send(self, frame: bytes) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(frame)
        finally:
            self.sock.setblocking(False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(client_frame(struct.pack("!H", 1000), 0x8))
        self.sock.close()

    def poll(self) -> None:
        """Read whatever has arrived (each read is one stamped batch of bytes)."""
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 18, 1024)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                raise ConnectionError("the relay closed a subscriber connection")
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    stamp = seconds + nanoseconds / 1e9
            self.buffer += data
            self._deliver(stamp)

    def _deliver(self, stamp: float) -> None:
        messages, pings, _ = take_messages(self.buffer, self.fragments)
        for payload in pings:
            self.send(client_frame(payload, 0xA))
        for message in messages:
            self.on_message(message, stamp)


# -- our relay --------------------------------------------------------------------------

OUR_SETTINGS = """
limits:
  event:
    createdAt:
      maxPositiveDelta: 900
      maxNegativeDelta: 0
    rateLimits:
      - description: none
        period: 1000
        rate: 100000000
  client:
    subscription:
      maxLimit: 5000
      defaultLimit: 500
  message:
    rateLimits:
      - description: none
        period: 1000
        rate: 100000000
network:
  maxOutgoingQueue: 100000
"""


@dataclass
class Relay:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


def _pg_env(dsn: str) -> dict[str, str]:
    from urllib.parse import unquote, urlsplit

    p = urlsplit(dsn)
    return {
        "DB_HOST": p.hostname or "127.0.0.1",
        "DB_PORT": str(p.port or 5432),
        "DB_USER": unquote(p.username or "postgres"),
        "DB_PASSWORD": unquote(p.password or ""),
        "DB_NAME": p.path.lstrip("/") or "postgres",
    }


def load_ours_sqlite(seed: Path, db_path: Path) -> None:
    """Create our schema (by opening the store) and copy the seed rows in with SQL."""
    from nostream.storage.sqlite import SqliteEventStore

    async def migrate() -> None:
        store = SqliteEventStore(db_path)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("ATTACH DATABASE ? AS s", (str(seed),))
    db.execute(
        "INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, d_tag, expires_at)"
        " SELECT lower(hex(id)), lower(hex(pubkey)), created_at, kind, tags, content,"
        " lower(hex(sig)), NULL, NULL FROM s.seed"
    )
    db.execute(
        "INSERT INTO event_tags (event_id, name, value, created_at)"
        " SELECT lower(hex(x.id)), t.value ->> 0, t.value ->> 1, x.created_at"
        " FROM s.seed AS x, json_each(x.tags) AS t"
        " WHERE json_array_length(t.value) > 1 AND length(t.value ->> 0) = 1"
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


def load_ours_postgres(seed: Path, dsn: str) -> None:
    """Migrate the database with our store and COPY the seed rows in."""
    from nostr_protocol.event import Event
    from nostream.storage.postgres import PostgresEventStore

    async def run() -> None:
        store = PostgresEventStore(dsn)
        await store.open()
        try:
            db = sqlite3.connect(seed)
            cursor = db.execute("SELECT * FROM seed")
            while rows := cursor.fetchmany(50_000):
                events = [
                    Event(
                        r[0].hex(),
                        r[1].hex(),
                        r[2],
                        r[3],
                        tuple(tuple(t) for t in orjson.loads(r[4])),
                        r[5],
                        r[6].hex(),
                    )
                    for r in rows
                ]
                await store.bulk_load(events)
            db.close()
            pool = store._pool
            assert pool is not None
            await pool.execute("ANALYZE")
        finally:
            await store.close()

    asyncio.run(run())


def start_ours(workdir: Path, postgres: str | None) -> Relay:
    port = free_port()
    (workdir / "settings.yaml").write_text(OUR_SETTINGS)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASSIE_", "DB_", "REDIS_", "RELAY_", "NOSTR_", "PAYMENTS_"))
    }
    env.update(
        RELAY_HOST="127.0.0.1",
        RELAY_PORT=str(port),
        NOSTR_CONFIG_DIR=str(workdir),
        NOSTR_DATA_DIR=str(workdir),
    )
    if postgres:
        env.update(_pg_env(postgres))
    log_file = open(workdir / "relay.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "nostream.cli", "serve"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    return Relay("ours", port, proc, workdir)


def our_sqlite_path(workdir: Path) -> Path:
    from nostream.config import load_settings

    env = {"NOSTR_CONFIG_DIR": str(workdir), "NOSTR_DATA_DIR": str(workdir)}
    (workdir / "settings.yaml").write_text(OUR_SETTINGS)
    return Path(load_settings(env).sqlite_path)


# -- the peer (nostr-relay) -------------------------------------------------------------


def ensure_peer_venv() -> Path:
    exe = PEER_VENV / "bin" / "nostr-relay"
    if exe.exists():
        return exe
    log("creating bench/.peer-venv for nostr-relay (hash-pinned)")
    venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
    subprocess.run(
        [
            str(PEER_VENV / "bin" / "pip"),
            "install",
            "-q",
            "--require-hashes",
            "-r",
            str(PEER_REQUIREMENTS),
        ],
        check=True,
    )
    return exe


PEER_CONFIG = """
DEBUG: false
relay_name: bench peer
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db}
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 32
max_limit: 6000
logging:
  version: 1
  formatters:
    simple:
      format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
  handlers:
    console:
      class: logging.StreamHandler
      level: WARNING
      formatter: simple
      stream: ext://sys.stdout
  loggers:
    nostr_relay:
      level: WARNING
      handlers: [console]
      propagate: false
"""


def start_peer(workdir: Path) -> Relay:
    exe = ensure_peer_venv()
    port = free_port()
    config = workdir / "peer.yaml"
    config.write_text(PEER_CONFIG.format(db=workdir / "peer.sqlite3", port=port))
    log_file = open(workdir / "peer.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [str(exe), "-c", str(config), "serve"],
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    return Relay("nostr-relay", port, proc, workdir)


def stop_peer(relay: Relay) -> None:
    if relay.proc.poll() is None:
        os.killpg(relay.proc.pid, signal.SIGTERM)  # gunicorn and its worker
        try:
            relay.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(relay.proc.pid, signal.SIGKILL)
            relay.proc.wait()


def load_peer(seed: Path, db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute("ATTACH DATABASE ? AS s", (str(seed),))
    db.execute(
        "INSERT INTO events (id, created_at, kind, pubkey, tags, sig, content)"
        " SELECT id, created_at, kind, pubkey, tags, sig, content FROM s.seed"
    )
    db.execute(
        "INSERT OR IGNORE INTO tags (id, name, value)"
        " SELECT x.id, t.value ->> 0, t.value ->> 1 FROM s.seed AS x, json_each(x.tags) AS t"
        " WHERE json_array_length(t.value) > 1 AND length(t.value ->> 0) = 1"
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


# -- measurements -----------------------------------------------------------------------


@dataclass
class Result:
    ingest_rate: float = float("nan")
    ingest_ok: int = 0
    ingest_p50: float = float("nan")
    ingest_p99: float = float("nan")
    req_p50: float = float("nan")
    req_p99: float = float("nan")
    req_rows: float = float("nan")
    fanout_p50: float = float("nan")
    fanout_p99: float = float("nan")
    fanout_received: int = 0
    ingest_cpu: dict[str, float] = field(default_factory=dict)
    """Relay CPU per acknowledged event during ingest, µs, by thread (ours only)."""
    client_cpu: float = float("nan")
    """The bench client's own CPU per acknowledged event during ingest, µs."""
    errors: list[str] = field(default_factory=list)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds used so far by each thread of process ``pid``, summed by thread
    name (``/proc/<pid>/task``; the main thread is called "event loop")."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        label = "event loop" if task.name == str(pid) else name
        used[label] = used.get(label, 0.0) + seconds
    return used


async def measure_ingest(
    url: str, events: list[list[dict[str, Any]]], window: int, result: Result, budget: float
) -> None:
    """Publish until every event is acknowledged or ``budget`` seconds have passed.

    Each publisher keeps ``window`` EVENTs in flight on its own connection and
    sends the next one when an OK comes back (the EVENTs answered by one read of
    the socket leave in one write). The EVENT frames are encoded and masked
    before the clock starts; the rate is OK-true answers per second from the
    first send to the last answer, and an OK's latency runs from its EVENT's
    send to its arrival.
    """
    latencies: list[float] = []
    rejected: list[str] = []
    frames = [[(e["id"], client_frame(orjson.dumps(["EVENT", e]))) for e in b] for b in events]
    loop = asyncio.get_running_loop()

    class Publisher:
        def __init__(self, batch: list[tuple[str, bytes]]) -> None:
            self.pending = iter(batch)
            self.sent: dict[str, float] = {}
            self.done: asyncio.Future[None] = loop.create_future()
            self.ws: LeanWs | None = None

        def send_next(self) -> None:
            item = next(self.pending, None) if time.perf_counter() < deadline else None
            if item is None:
                if not self.sent and not self.done.done():
                    self.done.set_result(None)
                return
            assert self.ws is not None
            self.sent[item[0]] = time.perf_counter()
            self.ws.send(item[1])

        def on_message(self, payload: bytes, arrival: float) -> None:
            data = orjson.loads(payload)
            if data[0] != "OK":
                return
            started = self.sent.pop(data[1], None)
            if started is not None:
                if data[2]:
                    latencies.append(arrival - started)
                else:
                    rejected.append(str(data[3]))
            self.send_next()

    publishers = [Publisher(batch) for batch in frames]
    for pub in publishers:
        pub.ws = await LeanWs.connect(url, pub.on_message)
    deadline = time.perf_counter() + budget
    began = time.perf_counter()
    for pub in publishers:
        for _ in range(window):
            pub.send_next()
    waits = [
        asyncio.wait([pub.done, pub.ws.closed], return_when=asyncio.FIRST_COMPLETED)
        for pub in publishers
        if pub.ws is not None
    ]
    await asyncio.gather(*waits)
    elapsed = time.perf_counter() - began
    for pub in publishers:
        if pub.ws is not None:
            if pub.ws.closed.done() and not pub.done.done():
                rejected.append("connection closed")
            pub.ws.close()
    sent_total = len(latencies) + len(rejected)
    if sent_total < sum(len(b) for b in events):
        result.errors.append(f"ingest: time budget ({budget:.0f}s) hit after {sent_total} events")
    result.ingest_ok = len(latencies)
    result.ingest_rate = len(latencies) / elapsed
    result.ingest_p50 = pct(latencies, 0.5)
    result.ingest_p99 = pct(latencies, 0.99)
    if rejected:
        result.errors.append(f"ingest: {len(rejected)} rejected, e.g. {rejected[0]!r}")


async def measure_req(
    url: str, authors: list[str], queries: int, result: Result, budget: float
) -> None:
    latencies: list[float] = []
    rows: list[int] = []
    deadline = time.perf_counter() + budget
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        for i in range(queries):
            if time.perf_counter() > deadline:
                result.errors.append(f"REQ: time budget ({budget:.0f}s) hit after {i} queries")
                break
            sub = f"q{i}"
            filt = {"authors": [authors[i % len(authors)]], "kinds": [1], "limit": 100}
            started = time.perf_counter()
            await ws.send_str(dumps(["REQ", sub, filt]))
            count = 0
            while True:
                data = orjson.loads((await ws.receive()).data)
                if data[0] == "EVENT" and data[1] == sub:
                    count += 1
                elif data[0] == "EOSE" and data[1] == sub:
                    break
            latencies.append(time.perf_counter() - started)
            rows.append(count)
            await ws.send_str(dumps(["CLOSE", sub]))
    result.req_p50 = pct(latencies, 0.5)
    result.req_p99 = pct(latencies, 0.99)
    result.req_rows = statistics.mean(rows)


FANOUT_POLL = 0.025
"""Seconds between a subscriber process's passes over its sockets."""


def _fanout_child(url: str, first: int, count: int, author: str, conn: Any) -> None:
    """A subscriber process: ``count`` connections each subscribed to ``author``'s notes.

    Says ``ready`` once every subscription has its EOSE, ``("got", id)`` once every
    connection has received event ``id``, and on ``stop`` sends back each event's
    arrival times: the kernel's receive timestamps (wall clock, comparable with
    the parent's ``time.time()`` at send).
    """

    async def run() -> None:
        arrivals: dict[str, list[float]] = {}
        eose = 0
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def on_message(payload: bytes, arrival: float) -> None:
            nonlocal eose
            data = orjson.loads(payload)
            if data[0] == "EVENT":
                got = arrivals.setdefault(data[2]["id"], [])
                got.append(arrival)
                if len(got) == count:
                    conn.send(("got", data[2]["id"]))
            elif data[0] == "EOSE":
                eose += 1
                if eose == count and not ready.done():
                    ready.set_result(None)

        sockets = []
        for i in range(first, first + count):
            ws = StampedSubscriber(url, on_message)
            ws.send(
                client_frame(
                    orjson.dumps(["REQ", f"f{i}", {"authors": [author], "kinds": [1], "limit": 0}])
                )
            )
            sockets.append(ws)

        async def read_all() -> None:
            # The sockets are read every POLL seconds rather than on each packet: the
            # arrival times come from the kernel, and a subscriber process woken for
            # every frame would take CPU from the relay while it is still sending.
            while True:
                for ws in sockets:
                    ws.poll()
                await asyncio.sleep(FANOUT_POLL)

        reader = asyncio.create_task(read_all())
        await asyncio.wait_for(ready, 120)
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)  # "stop"
        reader.cancel()
        conn.send(arrivals)
        for ws in sockets:
            ws.close()

    asyncio.run(run())


async def measure_fanout(
    url: str, subscribers: int, events: list[dict[str, Any]], result: Result, procs: int
) -> None:
    """Latency from publishing an event to its arrival at each of ``subscribers``.

    An event's arrival at a subscriber is the kernel's receive timestamp of the
    frame on that subscriber's socket (``SO_TIMESTAMPNS``), and its start is the
    publisher's clock just before it writes the EVENT: the relay's whole path
    (checks, durable store, fan-out to every socket) is inside, and how soon the
    client processes get to read their sockets is not. The subscribers are spread
    over ``procs`` processes. Events are published one at a time; the next goes out
    once every subscriber has the previous one, plus 50 ms.
    """
    author = events[0]["pubkey"]
    ctx = multiprocessing.get_context("spawn")
    children = []
    share, extra = divmod(subscribers, procs)
    first = 0
    for p in range(procs):
        count = share + (1 if p < extra else 0)
        if count == 0:
            continue
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_fanout_child, args=(url, first, count, author, child_end))
        proc.start()
        children.append((proc, parent_end))
        first += count

    async def recv(conn: Any, wait_at_most: float) -> Any:
        def wait() -> Any:
            try:
                if conn.poll(wait_at_most):
                    return conn.recv()
            except EOFError:
                raise ConnectionError("a subscriber process exited") from None
            raise TimeoutError

        return await asyncio.to_thread(wait)

    started: dict[str, float] = {}
    try:
        for _, conn in children:
            if await recv(conn, 180) != "ready":
                raise RuntimeError("a subscriber process did not get ready")
        frames = [(e["id"], client_frame(orjson.dumps(["EVENT", e]))) for e in events]
        pub = await LeanWs.connect(url, lambda payload, arrival: None)
        for event_id, frame in frames:
            started[event_id] = time.time()
            pub.send(frame)
            try:
                for _, conn in children:
                    while (await recv(conn, 10)) != ("got", event_id):
                        pass
            except TimeoutError:
                result.errors.append(f"fan-out: not every subscriber got {event_id[:8]}")
            await asyncio.sleep(0.05)  # let the relay settle between events
        pub.close()
        arrivals: dict[str, list[float]] = {}
        for _, conn in children:
            conn.send("stop")
            while not isinstance(got := await recv(conn, 60), dict):
                pass
            for event_id, times in got.items():
                arrivals.setdefault(event_id, []).extend(times)
    finally:
        for proc, _ in children:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    latencies = [t - started[i] for i, times in arrivals.items() if i in started for t in times]
    result.fanout_received = len(latencies)
    result.fanout_p50 = pct(latencies, 0.5)
    result.fanout_p99 = pct(latencies, 0.99)


def fresh_events(
    publishers: int, total: int, tag: str
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """``total`` kind-1 events for ingest split over publishers, and 20 fan-out events."""
    signers = [Signer(f"bench-{tag}-pub-{i}".encode()) for i in range(publishers)]
    now = int(time.time())
    batches = [
        [
            signers[p].sign(1, f"ingest {tag} {p}:{i}", [["t", "bench"]], now)
            for i in range(total // publishers)
        ]
        for p in range(publishers)
    ]
    fan = Signer(f"bench-{tag}-fanout".encode())
    fanout = [fan.sign(1, f"fan-out {tag} {i}", [], now) for i in range(20)]
    return batches, fanout


async def run_suite(relay: Relay, args: argparse.Namespace, authors: list[str]) -> Result:
    result = Result()
    await wait_http(relay.port, relay.proc)
    batches, fanout = fresh_events(args.publishers, args.ingest, f"{relay.name}-{time.time()}")
    log(f"{relay.name}: REQ x{args.queries}")
    await measure_req(relay.url, authors, args.queries, result, args.budget)
    log(f"{relay.name}: ingest {args.ingest} events, {args.publishers} publishers")
    cpu_before = thread_cpu(relay.proc.pid) if relay.name == "ours" else {}
    client_before = time.process_time()
    await measure_ingest(relay.url, batches, args.window, result, args.budget)
    if result.ingest_ok:
        result.client_cpu = (time.process_time() - client_before) / result.ingest_ok * 1e6
        if cpu_before:
            cpu_after = thread_cpu(relay.proc.pid)
            result.ingest_cpu = {
                name: (cpu_after[name] - cpu_before.get(name, 0.0)) / result.ingest_ok * 1e6
                for name in sorted(cpu_after)
            }
    log(f"{relay.name}: fan-out to {args.subscribers} subscribers")
    try:
        await measure_fanout(
            relay.url, args.subscribers, fanout[: args.fanout_events], result, args.fanout_procs
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        result.errors.append(f"fan-out failed: {exc!r}")
    return result


# -- report -----------------------------------------------------------------------------


def report(args: argparse.Namespace, ours: Result, peer: Result | None) -> None:
    backend = "PostgreSQL" if args.postgres else "SQLite"
    rows: list[tuple[str, float, float | None, bool, str]] = [
        (
            "ingest, events/s",
            ours.ingest_rate,
            (peer.ingest_rate if peer else None),
            True,
            ">= 5000, >= 5x",
        ),
        ("OK latency p50, ms", ours.ingest_p50, (peer.ingest_p50 if peer else None), False, ""),
        ("OK latency p99, ms", ours.ingest_p99, (peer.ingest_p99 if peer else None), False, ""),
        (
            f"REQ p50 ({args.events:,} ev), ms",
            ours.req_p50,
            (peer.req_p50 if peer else None),
            False,
            "< 5",
        ),
        (
            f"REQ p99 ({args.events:,} ev), ms",
            ours.req_p99,
            (peer.req_p99 if peer else None),
            False,
            "",
        ),
        (
            f"fan-out p50 ({args.subscribers} subs), ms",
            ours.fanout_p50,
            (peer.fanout_p50 if peer else None),
            False,
            "",
        ),
        (
            f"fan-out p99 ({args.subscribers} subs), ms",
            ours.fanout_p99,
            (peer.fanout_p99 if peer else None),
            False,
            "< 100",
        ),
    ]
    print()
    print(
        f"nostream ({backend}) vs nostr-relay 1.14 (SQLite, gunicorn 1 worker); "
        f"{os.cpu_count()} CPUs; client in the same machine"
    )
    header = f"{'metric':34} {'ours':>10} {'nostr-relay':>12} {'ours better by':>15}  target"
    print(header)
    print("-" * len(header))
    for name, mine, theirs, higher_better, target in rows:
        if theirs is None or theirs != theirs or mine != mine:
            ratio = "-"
        elif higher_better:
            ratio = f"{mine / theirs:.1f}x" if theirs else "inf"
        else:
            ratio = f"{theirs / mine:.1f}x" if mine else "inf"
        peer_cell = "-" if theirs is None else f"{theirs:12.1f}"
        print(f"{name:34} {mine:10.1f} {peer_cell:>12} {ratio:>15}  {target}")
    print(
        f"REQ rows per query: ours {ours.req_rows:.0f}"
        + (f", nostr-relay {peer.req_rows:.0f}" if peer else "")
    )
    if ours.ingest_cpu:
        parts = ", ".join(f"{name} {us:.0f}" for name, us in ours.ingest_cpu.items() if us >= 0.5)
        total = sum(ours.ingest_cpu.values())
        print(f"ours, CPU per ingested event, µs: {total:.0f} ({parts})")
    print(f"bench client CPU per ingested event (ours), µs: {ours.client_cpu:.0f}")
    for name, res in (("ours", ours), ("nostr-relay", peer)):
        if res is not None:
            for err in res.errors:
                print(f"note ({name}): {err}")


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="seeded events for REQ")
    parser.add_argument("--ingest", type=int, default=20_000, help="events published")
    parser.add_argument("--publishers", type=int, default=16)
    parser.add_argument("--window", type=int, default=16, help="events in flight per publisher")
    parser.add_argument("--queries", type=int, default=300, help="REQs timed")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--fanout-events", type=int, default=20)
    parser.add_argument(
        "--fanout-procs", type=int, default=2, help="processes the subscribers are spread over"
    )
    parser.add_argument(
        "--budget", type=float, default=90, help="seconds at most for ingest and for REQ"
    )
    parser.add_argument("--postgres", metavar="DSN", help="run ours on this (empty) database")
    parser.add_argument("--skip-peer", action="store_true", help="measure only ours")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="signing processes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.fanout_events > 20:
        parser.error("--fanout-events is at most 20")

    seed = ensure_seed(args.events, args.procs)
    authors = kind1_authors()
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    ours_dir, peer_dir = work / "ours", work / "peer"
    ours_dir.mkdir()
    peer_dir.mkdir()
    peer_result = None
    try:
        backend = "PostgreSQL" if args.postgres else "SQLite"
        log(f"loading {args.events:,} events into ours ({backend})")
        started = time.monotonic()
        if args.postgres:
            load_ours_postgres(seed, args.postgres)
        else:
            load_ours_sqlite(seed, our_sqlite_path(ours_dir))
        log(f"loaded in {time.monotonic() - started:.0f}s")
        relay = start_ours(ours_dir, args.postgres)
        try:
            ours_result = asyncio.run(run_suite(relay, args, authors))
        finally:
            stop(relay.proc)
        if not args.skip_peer:
            peer = start_peer(peer_dir)  # first start creates its schema
            try:
                asyncio.run(wait_http(peer.port, peer.proc))
            finally:
                stop_peer(peer)
            log(f"loading {args.events:,} events into nostr-relay")
            load_peer(seed, peer_dir / "peer.sqlite3")
            peer = start_peer(peer_dir)
            try:
                peer_result = asyncio.run(run_suite(peer, args, authors))
            finally:
                stop_peer(peer)
        report(args, ours_result, peer_result)
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
