import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dassie.claims.channels import InMemoryChannelSource
from dassie.claims.recovery import RecoveryPool
from dassie.claims.service import ClaimService, VerificationUnavailable
from dassie.ledger import LedgerStore, channel_account, revenue_account
from dassie.testing import RELAY, claim_params, make_channel
from payment_channel.claim import SECP256K1_N

REVENUE = revenue_account("TEST/ETH")  # make_channel's channels are ETH on chain TEST


@pytest.fixture(params=["inline", "pool"])
async def service(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ClaimService]:
    """Signers recovered on the event loop, or by a worker process: same outcomes."""
    store = await LedgerStore.open(tmp_path / "ledger.db")
    source = InMemoryChannelSource("TEST", RELAY)
    pool = RecoveryPool(1) if request.param == "pool" else None
    if pool is not None:
        await pool.start()
    yield ClaimService(store, [source], expiry_margin=3600, recovery=pool)
    if pool is not None:
        assert pool.recovered_inline == 0
        await pool.close()
    await store.close()


async def verify(
    service: ClaimService, params: dict[str, str], event_id: str | None = None
) -> dict:
    p = dict(params)
    min_amount = int(p.pop("minAmount"))
    result = await service.verify_params(
        p["channelId"], p["claimAmount"], p["nonce"], p["signature"], p["currency"], min_amount,
        event_id,
    )  # fmt: skip
    return result.to_json(time.time(), 3600)


def add(service: ClaimService, **kwargs):  # type: ignore[no-untyped-def]
    channel = make_channel(**kwargs)
    service.sources[0].add(channel)  # type: ignore[attr-defined]
    return channel


async def test_accepts_and_credits_delta(service: ClaimService) -> None:
    channel = add(service)
    first = await verify(service, claim_params(channel.channel_id, 100, 1, min_amount=100))
    assert first["valid"] is True and first["credited"] == "100"
    assert first["channel"]["status"] == "open"
    second = await verify(service, claim_params(channel.channel_id, 250, 2, min_amount=100))
    assert second["credited"] == "150"
    assert service.store.balance(REVENUE).balance == -250
    assert service.store.balance(channel_account("TEST", channel.channel_id)).balance == 250
    assert service.best_claim(channel.channel_id).nonce == 2  # type: ignore[union-attr]


async def reason(service: ClaimService, params: dict[str, str]) -> str:
    result = await verify(service, params)
    assert result["valid"] is False
    return str(result["reason"])


async def test_every_reason(service: ClaimService) -> None:
    good = add(service)
    await verify(service, claim_params(good.channel_id, 100, 5))
    bad_sig = claim_params(good.channel_id, 200, 6)
    flipped = "1c" if bad_sig["signature"].endswith("1b") else "1b"
    bad_sig["signature"] = bad_sig["signature"][:-2] + flipped
    cases = {
        "malformed-claim": {**claim_params(good.channel_id, 1, 6), "nonce": "-1"},
        "insufficient-payment": claim_params(good.channel_id, 150, 6, min_amount=51),
        "invalid-signature": claim_params(good.channel_id, 200, 6, key=b"\x33" * 32),
        "invalid-nonce": claim_params(good.channel_id, 300, 5),
        "channel-not-found": claim_params("0x" + "ab" * 32, 1, 1),
        "channel-expired": claim_params(
            add(service, expiration=int(time.time()) + 1800).channel_id, 1, 1
        ),
        "channel-closed": claim_params(add(service, closed=True).channel_id, 1, 1),
        "insufficient-channel-balance": claim_params(good.channel_id, 10**6 + 1, 6),
        "unsupported-currency": claim_params(good.channel_id, 200, 6, currency="USDC"),
    }
    for expected, params in cases.items():
        assert await reason(service, params) == expected, expected
    # a tampered signature is either unrecoverable or recovers someone else
    assert await reason(service, bad_sig) == "invalid-signature"
    # a high-s twin of a valid signature, an unknown v, a signature of zeros
    valid = bytes.fromhex(claim_params(good.channel_id, 200, 6)["signature"][2:])
    high_s = (SECP256K1_N - int.from_bytes(valid[32:64], "big")).to_bytes(32, "big")
    for signature in (
        valid[:32] + high_s + bytes([valid[64] ^ 7]),
        valid[:64] + b"\x1d",
        bytes(65),
    ):
        tampered = {**claim_params(good.channel_id, 200, 6), "signature": "0x" + signature.hex()}
        assert await reason(service, tampered) == "invalid-signature"
    # a channel that pays someone else is not found
    other = add(service, recipient="0x" + "12" * 20)
    assert await reason(service, claim_params(other.channel_id, 1, 1)) == "channel-not-found"
    # nothing rejected was credited or recorded
    assert service.store.balance(REVENUE).balance == -100
    assert service.best_claim(good.channel_id).claim_amount == 100  # type: ignore[union-attr]


async def test_racing_claims_with_same_nonce_credit_once(service: ClaimService) -> None:
    channel = add(service)
    same = [claim_params(channel.channel_id, 10 * (i + 1), 1) for i in range(20)]
    results = await asyncio.gather(*(verify(service, p) for p in same))
    assert sum(r["valid"] for r in results) == 1
    assert {r.get("reason") for r in results if not r["valid"]} == {"invalid-nonce"}
    credited = next(int(r["credited"]) for r in results if r["valid"])
    assert service.store.balance(REVENUE).balance == -credited
    assert service.sources[0].lookups == 1  # type: ignore[attr-defined]


async def test_unreachable_chain_is_an_error_not_a_rejection(service: ClaimService) -> None:
    service.sources[0].unavailable = "connection refused"  # type: ignore[attr-defined]
    with pytest.raises(VerificationUnavailable):
        await verify(service, claim_params("0x" + "cd" * 32, 1, 1))
    assert service.store.ledger.accounts == {}


async def test_top_up_is_seen_on_refresh(service: ClaimService) -> None:
    from dataclasses import replace

    channel = add(service, deposit=100)
    assert (await verify(service, claim_params(channel.channel_id, 100, 1)))["valid"]
    service.sources[0].add(replace(channel, deposit=1000))  # type: ignore[attr-defined]
    assert (await verify(service, claim_params(channel.channel_id, 500, 2)))["valid"]


EVENT = "ab" * 32


async def test_the_same_claim_for_the_same_event_is_answered_again_and_credited_once(
    service: ClaimService,
) -> None:
    channel = add(service)
    params = claim_params(channel.channel_id, 100, 1, min_amount=100)
    first = await verify(service, params, EVENT)
    assert (first["valid"], first["credited"], "replayed" in first) == (True, "100", False)
    # Racing copies and later copies for the same event: the first answer again, no credit.
    again = await asyncio.gather(*(verify(service, params, EVENT) for _ in range(5)))
    assert all((a["valid"], a["credited"], a["replayed"]) == (True, "100", True) for a in again)
    assert service.store.balance(REVENUE).balance == -100
    # For another event, or without saying which, it is a reused nonce.
    assert await reason(service, params) == "invalid-nonce"
    assert (await verify(service, params, "cd" * 32))["reason"] == "invalid-nonce"
    # The same event with another claim on that nonce is no replay either.
    forged = claim_params(channel.channel_id, 99, 1, min_amount=1)
    assert (await verify(service, forged, EVENT))["reason"] == "invalid-nonce"
    # Once a later claim is accepted, the old one is no longer the channel's best.
    assert (await verify(service, claim_params(channel.channel_id, 200, 2, min_amount=100)))[
        "valid"
    ]
    assert (await verify(service, params, EVENT))["reason"] == "invalid-nonce"
    assert service.store.balance(REVENUE).balance == -200


async def test_claims_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    source = InMemoryChannelSource("TEST", RELAY)
    service = ClaimService(store, [source], 3600)
    channel = make_channel()
    source.add(channel)
    for n in range(1, 6):
        assert (await verify(service, claim_params(channel.channel_id, n * 10, n), EVENT))["valid"]
    await store.close()
    store = await LedgerStore.open(path)
    service = ClaimService(store, [source], 3600)
    assert await reason(service, claim_params(channel.channel_id, 60, 5)) == "invalid-nonce"
    # The event a claim paid for is recorded with it: a retry after the restart is known.
    retry = await verify(service, claim_params(channel.channel_id, 50, 5), EVENT)
    assert (retry["valid"], retry["credited"], retry["replayed"]) == (True, "10", True)
    assert (await verify(service, claim_params(channel.channel_id, 70, 6)))["credited"] == "20"
    await store.close()


async def test_a_channel_being_closed_takes_no_more_claims(service: ClaimService) -> None:
    channel = add(service)
    assert (await verify(service, claim_params(channel.channel_id, 10, 1)))["valid"]
    service.mark_closed(channel.channel_id)  # a close transaction is on its way
    # the chain still says "open": the node must not believe it
    assert await reason(service, claim_params(channel.channel_id, 20, 2)) == "channel-closed"
    service.reopen(channel.channel_id)  # the close failed
    assert (await verify(service, claim_params(channel.channel_id, 20, 2)))["credited"] == "10"


async def test_failed_commit_acknowledges_nothing_and_writes_nothing(tmp_path: Path) -> None:
    import sqlite3

    from dassie.ledger import LedgerUnavailable

    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    source = InMemoryChannelSource("TEST", RELAY)
    service = ClaimService(store, [source], 3600)
    channel = make_channel()
    source.add(channel)
    assert (await verify(service, claim_params(channel.channel_id, 10, 1)))["valid"]

    real_write = store._write

    def failing_write(conn: sqlite3.Connection, batch: list) -> BaseException | None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO claims (channel_id, chain, claim_amount, nonce, signature, delta,"
            " transfer_id, accepted_at) VALUES ('x', 'y', '1', '1', 's', '1', NULL, 0)"
        )
        conn.execute("ROLLBACK")  # as if the disk failed before COMMIT
        return OSError("disk I/O error")

    store._write = failing_write  # type: ignore[method-assign]
    with pytest.raises(LedgerUnavailable):
        await verify(service, claim_params(channel.channel_id, 30, 2))
    with pytest.raises(LedgerUnavailable):  # refuses work until restarted
        await verify(service, claim_params(channel.channel_id, 40, 3))
    store._write = real_write  # type: ignore[method-assign]
    await store.close()

    reopened = await LedgerStore.open(path)
    try:
        assert reopened.best_claims[channel.channel_id].nonce == 1
        assert reopened.balance(REVENUE).balance == -10
        reopened.ledger.check_invariant()
        rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        assert rows == 1
    finally:
        await reopened.close()


async def test_not_found_needs_every_chain_to_answer(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    up, down = InMemoryChannelSource("UP", RELAY), InMemoryChannelSource("DOWN", RELAY)
    down.unavailable = "timeout"
    service = ClaimService(store, [up, down], 3600)
    channel = make_channel(chain="UP")
    up.add(channel)
    try:
        # found on a chain that answers: verified even though another chain is down
        assert (await verify(service, claim_params(channel.channel_id, 5, 1)))["valid"]
        with pytest.raises(VerificationUnavailable):
            await verify(service, claim_params("0x" + "ef" * 32, 5, 1))
        down.unavailable = None
        assert await reason(service, claim_params("0x" + "ef" * 32, 5, 1)) == "channel-not-found"
    finally:
        await store.close()
