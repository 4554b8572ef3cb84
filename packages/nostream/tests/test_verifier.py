"""The signature-checking thread answers exactly as the inline check does."""

from __future__ import annotations

import asyncio
import dataclasses
import os

from nostr_protocol.event import Event
from nostr_protocol.keys import sign_event
from nostr_protocol.validate import check_signature
from nostream.verifier import SignatureVerifier


def events(n: int) -> list[tuple[Event, bool]]:
    """``n`` signed notes, every third with a broken signature, with the right answer."""
    out = []
    for i in range(n):
        e = sign_event(os.urandom(32), kind=1, content=f"note {i}")
        if i % 3 == 1:
            flipped = ("1" if e.sig[0] == "0" else "0") + e.sig[1:]
            out.append((dataclasses.replace(e, sig=flipped), False))
        elif i % 3 == 2:
            out.append((dataclasses.replace(e, sig=e.sig[:-2]), False))  # 63 bytes
        else:
            out.append((e, True))
    return out


async def test_concurrent_checks_each_get_their_own_answer() -> None:
    verifier = SignatureVerifier()
    verifier.start()
    try:
        cases = events(60)
        answers = await asyncio.gather(*(verifier.verify(e) for e, _ in cases))
        assert answers == [ok for _, ok in cases]
        assert answers.count(True) == 20
    finally:
        await verifier.close()


async def test_inline_before_start_and_after_close() -> None:
    verifier = SignatureVerifier()
    (good, _), (bad, _) = events(2)
    assert await verifier.verify(good) is True
    assert await verifier.verify(bad) is False
    verifier.start()
    await verifier.close()
    assert await verifier.verify(good) is True
    assert await verifier.verify(bad) is False


async def test_close_answers_what_is_queued() -> None:
    verifier = SignatureVerifier()
    verifier.start()
    cases = events(30)
    pending = [asyncio.ensure_future(verifier.verify(e)) for e, _ in cases]
    await asyncio.sleep(0)  # every check is queued before the thread is told to stop
    await verifier.close()
    assert [await p for p in pending] == [ok for _, ok in cases]


async def test_the_thread_agrees_with_check_signature() -> None:
    verifier = SignatureVerifier()
    verifier.start()
    try:
        for e, _ in events(9):
            try:
                check_signature(e)
                inline = True
            except ValueError:
                inline = False
            assert await verifier.verify(e) is inline
    finally:
        await verifier.close()
