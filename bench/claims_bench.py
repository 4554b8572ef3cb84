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
the node's recovery workers, so it counts all the work a claim costs.

    .venv/bin/python bench/claims_bench.py [--claims 20000] [--channels 200] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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


class Clock:
    """Wall time, and CPU time of this process (all threads) and ``workers``, since creation."""

    def __init__(self, workers: list[int] | None = None) -> None:
        self.workers = workers or []
        self.wall = time.perf_counter()
        self.cpu = time.process_time() + _cpu_of(self.workers)

    def rates(self, count: int) -> tuple[float, float]:
        """(per wall second, per CPU second): the second is steadier on a busy machine."""
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() + _cpu_of(self.workers) - self.cpu
        return count / wall, count / cpu


def recover_only(claims: int) -> tuple[float, float]:
    """The floor: recover_claim_signer alone, one core, no node."""
    channel = bytes(32)
    signed = [(n, sign_claim(SENDER_KEY, channel, n, n)) for n in range(1, claims + 1)]
    clock = Clock()
    for n, signature in signed:
        recover_claim_signer(channel, n, n, signature)
    return clock.rates(claims)


async def in_process(
    claims: int, channels: int, workers: int, workdir: Path
) -> tuple[float, float]:
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


async def over_rpc(
    claims: int, channels: int, connections: int, workdir: Path
) -> tuple[float, float]:
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
            rates = clock.rates(len(params))
            for ws in sockets:
                await ws.close()
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=20000)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--workers", type=int, default=default_verify_workers())
    args = parser.parse_args()
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
    print(f"{'mode':<26}{'claims/s':>10}{'per CPU-s':>11}{'target':>9}")
    for name, (rate, cpu_rate), target in rows:
        goal = "" if target is None else f"{target:,}"
        print(f"{name:<26}{rate:>10,.0f}{cpu_rate:>11,.0f}{goal:>9}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"recovery workers: {args.workers} in process; RPC rows: the node's default")
    print("RPC rows: client and node share this process (and its CPU time).")


if __name__ == "__main__":
    asyncio.run(main())
