"""The signer-recovery pool: answers as in process, survives its workers, leaves none behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dassie.claims.channels import InMemoryChannelSource
from dassie.claims.recovery import RecoveryPool, recover_inline
from dassie.claims.recovery_worker import (
    ANSWER_SIZE,
    ProtocolError,
    answer_batch,
    decode_answers,
    encode_batch,
)
from dassie.claims.service import ClaimService
from dassie.ledger import LedgerStore
from dassie.testing import RELAY, SENDER, SENDER_KEY, claim_params, make_channel
from payment_channel._recover import single_thread_recoverer
from payment_channel.claim import SECP256K1_N, claim_message, sign_claim, split_signature

CHANNEL = bytes.fromhex("cd" * 32)
OTHER_KEY = bytes.fromhex("33" * 32)


def _unrecoverable_r() -> bytes:
    """An r that is no curve point's x: a signature with it never recovers."""
    message = bytes(96)
    for x in range(1, 1000):
        compact = x.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x00"
        if recover_inline(message, compact) is None:
            return x.to_bytes(32, "big")
    raise AssertionError("unreachable")


GARBAGE_R = _unrecoverable_r()


def items(count: int) -> list[tuple[bytes, bytes]]:
    """Wrong-key, valid, high-s and garbage (hash, r || s || recid) pairs, in turn."""
    out = []
    for n in range(1, count + 1):
        message = claim_message(CHANNEL, n, n)
        key = SENDER_KEY if n % 4 != 1 else OTHER_KEY
        compact = split_signature(sign_claim(key, CHANNEL, n, n))
        if n % 4 == 2:  # high s: libsecp256k1 recovers it (the low-s rule is checked before)
            s = SECP256K1_N - int.from_bytes(compact[32:64], "big")
            compact = compact[:32] + s.to_bytes(32, "big") + bytes([compact[64] ^ 1])
        elif n % 4 == 3:  # garbage: random, or an r off the curve
            compact = (os.urandom(32) if n % 8 == 3 else GARBAGE_R) + os.urandom(32) + b"\x01"
        out.append((message, compact))
    return out


@pytest.fixture
async def pool() -> AsyncIterator[RecoveryPool]:
    pool = RecoveryPool(1, max_batch=32, restart_delay=0.0)
    await pool.start()
    yield pool
    await pool.close()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def children_of(pid: int) -> set[int]:
    return {
        int(child)
        for tid in os.listdir(f"/proc/{pid}/task")
        for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
    }


async def exited(pid: int) -> None:
    """Wait for any process (not only a child) to exit, through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await asyncio.wait_for(done, 20)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def test_wire_format_round_trip_and_errors() -> None:
    batch = items(8)
    frame = encode_batch(batch)
    assert int.from_bytes(frame[:4], "big") == 8
    answers = decode_answers(answer_batch(frame[4:]))
    assert answers == [recover_inline(h, c) for h, c in batch]
    assert any(a is None for a in answers) and answers[3] == bytes.fromhex(SENDER[2:])
    # The worker's recoverer (buffers reused from item to item) answers the same,
    # including for a recovery id above 3 and after a failed item.
    odd = [(batch[0][0], batch[0][1][:64] + b"\x04"), *batch, *batch]
    body = encode_batch(odd)[4:]
    assert answer_batch(body, single_thread_recoverer()) == answer_batch(body)
    assert decode_answers(answer_batch(body))[0] is None
    with pytest.raises(ProtocolError):
        encode_batch([(bytes(31), bytes(65))])
    with pytest.raises(ProtocolError):
        answer_batch(frame[4:-1])
    with pytest.raises(ProtocolError):
        decode_answers(bytes(ANSWER_SIZE + 1))


async def test_pool_answers_equal_inline_recovery(pool: RecoveryPool) -> None:
    batch = items(400)
    answers = await asyncio.gather(*(pool.recover(h, c) for h, c in batch))
    assert answers == [recover_inline(h, c) for h, c in batch]
    assert pool.recovered_inline == 0
    assert {a for a in answers if a is not None} >= {bytes.fromhex(SENDER[2:])}


async def test_a_killed_worker_fails_over_and_is_restarted(pool: RecoveryPool) -> None:
    batch = items(600)
    (pid,) = pool.pids
    pending = [asyncio.ensure_future(pool.recover(h, c)) for h, c in batch]
    await asyncio.sleep(0)  # let the pool hand the first batches to the worker
    os.kill(pid, signal.SIGKILL)
    answers = await asyncio.gather(*pending)
    assert answers == [recover_inline(h, c) for h, c in batch]
    assert pool.recovered_inline > 0
    await asyncio.wait_for(pool.ready(), 20)
    assert pool.restarts == 1 and pool.pids != [pid]
    await exited(pid)
    assert gone(pid)
    # the new worker answers
    assert await pool.recover(*batch[3]) == recover_inline(*batch[3])


async def test_a_worker_that_stops_answering_is_replaced() -> None:
    pool = RecoveryPool(1, answer_timeout=0.5, restart_delay=0.0)
    await pool.start()
    try:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)
        batch = items(40)
        answers = await asyncio.gather(*(pool.recover(h, c) for h, c in batch))
        assert answers == [recover_inline(h, c) for h, c in batch]
        assert pool.recovered_inline == 40
        await exited(pid)  # killed for not answering
        await asyncio.wait_for(pool.ready(), 20)
        assert pool.pids != [pid]
    finally:
        await pool.close()


async def test_close_answers_everything_and_leaves_no_process() -> None:
    pool = RecoveryPool(2, max_batch=16)
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2
    batch = items(200)
    answers: dict[int, bytes | None] = {}
    for i, (h, c) in enumerate(batch):
        pool.submit(h, c, lambda signer, i=i: answers.__setitem__(i, signer))  # type: ignore[misc]
    await asyncio.sleep(0)  # some batches are with the workers, the rest still queued
    await pool.close()
    assert [answers[i] for i in range(len(batch))] == [recover_inline(h, c) for h, c in batch]
    assert all(gone(pid) for pid in pids)
    # after close, work is done in process
    assert await pool.recover(*batch[0]) == recover_inline(*batch[0])


async def test_pool_claims_are_decided_in_arrival_order(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    pool = RecoveryPool(1, max_batch=7)
    await pool.start()
    try:
        source = InMemoryChannelSource("TEST", RELAY)
        service = ClaimService(store, [source], 3600, recovery=pool)
        channels = [make_channel() for _ in range(3)]
        for channel in channels:
            source.add(channel)
        from payment_channel.tag import parse_fields

        claims = []
        for n in range(1, 61):
            for channel in channels:
                p = claim_params(channel.channel_id, n * 10, n)
                claims.append(
                    parse_fields(
                        p["channelId"], p["claimAmount"], p["nonce"], p["signature"], p["currency"]
                    )
                )
        results = await asyncio.gather(*(service.verify(c, 10) for c in claims))
        assert all(r.to_json(time.time(), 3600)["valid"] for r in results)
        assert all(service.best_claim(c.channel_id).nonce == 60 for c in channels)  # type: ignore[union-attr]
        assert pool.recovered_inline == 0
        # a verification cancelled before its decision is never decided
        late = claim_params(channels[0].channel_id, 700, 70)
        task = asyncio.ensure_future(
            service.verify_params(
                late["channelId"], late["claimAmount"], late["nonce"], late["signature"], "ETH", 1
            )
        )
        await asyncio.sleep(0)  # submitted, not yet answered by the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = claim_params(channels[0].channel_id, 700, 70)
        verified = await service.verify_params(
            again["channelId"], again["claimAmount"], again["nonce"], again["signature"], "ETH", 1
        )
        assert verified.to_json(time.time(), 3600)["credited"] == "100"
    finally:
        await pool.close()
        await store.close()


async def test_a_killed_node_leaves_no_worker(tmp_path: Path) -> None:
    import socket

    import aiohttp

    from dassie.testing import TOKEN

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "RPC_AUTH_TOKEN": TOKEN,
        "LEDGER_DB_PATH": str(tmp_path / "ledger.db"),
        "DASSIE_HOST": "127.0.0.1",
        "DASSIE_PORT": str(port),
        "CLAIM_VERIFY_WORKERS": "2",
    }
    node = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dassie.cli", "serve", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(400):  # until it listens (readiness, not synchronisation of results)
                assert node.returncode is None, "dassie exited"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        children = children_of(node.pid)
        assert len(children) == 2  # the node starts its workers before it serves
    finally:
        node.kill()
        await node.wait()
    for pid in children:
        await exited(pid)
        assert gone(pid)
