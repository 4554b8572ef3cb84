"""Claim verifications per second: in process, and through the RPC over 1 and 4 connections.

Pre-signed claims on an in-memory channel source; the real ledger (SQLite, WAL,
synchronous=FULL, group commit) on a temporary file. Every claim is fully
verified (signature recovered and compared, nonce, amount, channel checks) and
answered only once its claim row and credit are committed. Prints a table.

- "signature recovery only": ``recover_claim_signer`` (checksummed address) in a
  loop on one core, no node.
- "in process": ``ClaimService.verify`` for all claims gathered at once, set up as
  the node sets it up: with ``--workers`` signer-recovery processes (default: as
  ``CLAIM_VERIFY_WORKERS`` defaults on this machine, 1 with two or more CPUs).
  The client's pre-signed claims are built before the clock starts and then
  frozen out of the garbage collector (``gc.freeze()``), so that the collector's
  full passes do not rescan 60,000 client-side objects a real node never holds;
  everything the node allocates is collected as usual.
- "RPC": a node (``dassie.testing.running_node``, default configuration) and a
  client in this process, over 1 and 4 WebSocket connections.

"per CPU-s" divides by the CPU time of this process (all threads) plus that of
the node's recovery workers, so it counts all the work a claim costs. For the
in-process row, "node µs" is this process's CPU time (event loop and ledger
writer thread) per claim and "worker µs" the recovery workers' CPU time per claim.

Everything runs on the event loop ``dassie serve`` uses: uvloop when it is
installed (``--loop asyncio`` for asyncio's own), with the garbage collector set as
``dassie serve`` sets it (``service_runtime.tune_gc``).

    .venv/bin/python bench/claims_bench.py [--claims 20000] [--channels 200] [--workers N]
        [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from dassie.claims.channels import InMemoryChannelSource
from dassie.claims.recovery import RecoveryPool
from dassie.claims.service import ClaimService
from dassie.claims.verify import Accepted
from dassie.config import default_verify_workers
from dassie.ledger import LedgerStore
from dassie.testing import RELAY, SENDER_KEY, TOKEN, claim_params, make_channel, running_node
from payment_channel.claim import recover_claim_signer, sign_claim
from payment_channel.tag import parse_fields
from service_runtime import tune_gc


def presign(source: InMemoryChannelSource, claims: int, channels: int) -> list[dict[str, str]]:
    ids = []
    for _ in range(channels):
        channel = make_channel(deposit=10**30)
        source.add(channel)
        ids.append(channel.channel_id)
    per = claims // channels
    return [claim_params(c, n * 10, n) for n in range(1, per + 1) for c in ids]


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these live processes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


Rates = tuple[float, float, float | None, float | None]
"""Per wall second, per CPU second, and CPU µs per claim in this process and in the workers."""


class Clock:
    """Wall time, and CPU time of this process (all threads) and ``workers``, since creation."""

    def __init__(self, workers: list[int] | None = None) -> None:
        self.workers = workers or []
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.others = _cpu_of(self.workers)

    def rates(self, count: int) -> Rates:
        """Rates and CPU per claim: the CPU figures are steadier on a busy machine."""
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        others = _cpu_of(self.workers) - self.others
        return count / wall, count / (own + others), own / count * 1e6, others / count * 1e6


def recover_only(claims: int) -> Rates:
    """The floor: recover_claim_signer alone, one core, no node."""
    channel = bytes(32)
    signed = [(n, sign_claim(SENDER_KEY, channel, n, n)) for n in range(1, claims + 1)]
    clock = Clock()
    for n, signature in signed:
        recover_claim_signer(channel, n, n, signature)
    rate, cpu_rate, _, _ = clock.rates(claims)
    return rate, cpu_rate, None, None


async def in_process(claims: int, channels: int, workers: int, workdir: Path) -> Rates:
    store = await LedgerStore.open(workdir / "inproc.db")
    source = InMemoryChannelSource("TEST", RELAY)
    pool = RecoveryPool(workers) if workers > 0 else None
    if pool is not None:
        await pool.start()  # as the node does at start
    service = ClaimService(store, [source], 3600, recovery=pool)
    params = presign(source, claims, channels)
    parsed = [
        (parse_fields(p["channelId"], p["claimAmount"], p["nonce"], p["signature"], p["currency"]))
        for p in params
    ]
    del params
    gc.collect()
    gc.freeze()  # the client's data: not the node's to scan (see the module docstring)
    clock = Clock(pool.pids if pool is not None else None)
    results = await asyncio.gather(*(service.verify(c, 1) for c in parsed))
    rates = clock.rates(len(parsed))
    assert all(isinstance(r.decision, Accepted) for r in results)
    gc.unfreeze()
    if pool is not None:
        assert pool.recovered_inline == 0, "a worker failed during the run"
        await pool.close()
    await store.close()
    return rates


async def over_rpc(claims: int, channels: int, connections: int, workdir: Path) -> Rates:
    async with running_node(workdir / f"rpc{connections}.db") as node:
        params = presign(node.source, claims, channels)
        shards = [params[i::connections] for i in range(connections)]
        async with aiohttp.ClientSession() as http:
            sockets = [
                await http.ws_connect(
                    node.url + "/trpc", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                for _ in range(connections)
            ]

            async def drive(
                ws: aiohttp.ClientWebSocketResponse, shard: list[dict[str, str]]
            ) -> None:
                async def send() -> None:
                    for rid, p in enumerate(shard):
                        frame = {
                            "jsonrpc": "2.0",
                            "id": rid,
                            "method": "payment.verifyPaymentClaim",
                            "params": p,
                        }
                        await ws.send_bytes(orjson.dumps(frame))

                async def receive() -> None:
                    for _ in shard:
                        answer = orjson.loads((await ws.receive()).data)
                        assert answer["result"]["valid"], answer

                await asyncio.gather(send(), receive())

            recovery = node.node.recovery
            clock = Clock(recovery.pids if recovery is not None else None)
            await asyncio.gather(*(drive(ws, s) for ws, s in zip(sockets, shards, strict=True)))
            rate, cpu_rate, _, _ = clock.rates(len(params))
            rates = rate, cpu_rate, None, None  # node and client share this process
            for ws in sockets:
                await ws.close()
    return rates


def _uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


async def main(args: argparse.Namespace) -> None:
    tune_gc()  # the collector's settings of `dassie serve`, for the node in this process
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = [
            ("signature recovery only", recover_only(min(args.claims, 5000)), None),
            (
                "in process",
                await in_process(args.claims, args.channels, args.workers, workdir),
                10_000,
            ),
            (
                "RPC, 1 connection",
                await over_rpc(args.claims // 2, args.channels, 1, workdir),
                2_000,
            ),
            (
                "RPC, 4 connections",
                await over_rpc(args.claims // 2, args.channels, 4, workdir),
                None,
            ),
        ]
    print(
        f"{'mode':<26}{'claims/s':>10}{'per CPU-s':>11}{'node µs':>9}{'worker µs':>11}{'target':>9}"
    )
    for name, (rate, cpu_rate, own, others), target in rows:
        goal = "" if target is None else f"{target:,}"
        node = "" if own is None else f"{own:.1f}"
        worker = "" if others is None else f"{others:.1f}"
        print(f"{name:<26}{rate:>10,.0f}{cpu_rate:>11,.0f}{node:>9}{worker:>11}{goal:>9}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"recovery workers: {args.workers} in process; RPC rows: the node's default")
    print(f"event loop: {args.loop}")
    print("RPC rows: client and node share this process (and its CPU time).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=20000)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--workers", type=int, default=default_verify_workers())
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop" if _uvloop_installed() else "asyncio",
        help="the event loop (default: uvloop when installed, as `dassie serve` runs)",
    )
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
