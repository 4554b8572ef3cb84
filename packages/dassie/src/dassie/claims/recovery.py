"""Claim signer recovery on other cores: a pool of worker processes.

Recovering a signer costs ~65 µs of libsecp256k1 time, the largest part of a
claim's verification; threads cannot share it out (the GIL), processes can.
:meth:`RecoveryPool.submit` queues a ``(claim_message, signature)`` pair (the
worker hashes the message too) with a callback that gets the signer's 20-byte
address (None when the signature does not recover); :meth:`RecoveryPool.recover`
is the same as a coroutine.
Whatever is queued when a worker can take more goes to it as one batch (at
most ``max_batch`` items, ``depth`` batches in flight per worker, so a worker
never waits for the node between batches); answers come back in order.

Failure handling: a worker that dies (or does not answer within
``answer_timeout`` seconds, and is then killed) has its unanswered items
recovered in this process, and is restarted (after ``restart_delay`` when it
died young). While no worker is up, items are recovered in this process, so a
verification never waits on a dead worker. :meth:`close` lets the workers answer
what they have, closes their stdin and waits for them to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from payment_channel.claim import InvalidSignature, message_hash, recover_address

from .recovery_worker import ANSWER_SIZE, decode_answers, encode_batch

log = logging.getLogger(__name__)

Done = Callable[[bytes | None], None]
_Item = tuple[bytes, bytes, Done]


def recover_inline(message: bytes, compact: bytes) -> bytes | None:
    """What a worker answers for one item, computed in this process."""
    try:
        return recover_address(message_hash(message), compact)
    except InvalidSignature:
        return None


def _call(done: Done, signer: bytes | None) -> None:
    try:
        done(signer)
    except Exception:  # the submitter's bug must not take the worker down
        log.exception("claim recovery callback failed")


def _settle(items: list[_Item], signers: list[bytes | None]) -> None:
    for (_, _, done), signer in zip(items, signers, strict=True):
        try:  # _call, inlined: one call less per claim
            done(signer)
        except Exception:
            log.exception("claim recovery callback failed")


def _settle_inline(items: list[_Item]) -> None:
    for message, compact, done in items:
        _call(done, recover_inline(message, compact))


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    started_at: float
    in_flight: deque[list[_Item]] = field(default_factory=deque)
    reader: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None


class RecoveryPool:
    """``workers`` recovery processes (0: everything is recovered in this process)."""

    def __init__(
        self,
        workers: int,
        *,
        max_batch: int = 512,
        depth: int = 8,
        answer_timeout: float = 10.0,
        restart_delay: float = 1.0,
    ) -> None:
        if workers < 0 or max_batch < 1 or depth < 1:
            raise ValueError("workers >= 0, max_batch >= 1 and depth >= 1")
        self.size = workers
        self.max_batch = max_batch
        self.depth = depth
        self.answer_timeout = answer_timeout
        self.restart_delay = restart_delay
        self.workers: list[_Worker] = []
        """The live workers."""
        self.restarts = 0
        self.recovered_inline = 0
        """Items recovered in this process because no worker could take them."""
        self._pending: list[_Item] = []
        self._flush_scheduled = False
        self._started = False
        self._closed = False
        self._ready: list[asyncio.Future[None]] = []
        self._restarting: set[asyncio.Future[None]] = set()
        self._reaping: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        """Start the workers (they are ready to take work when this returns)."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def close(self) -> None:
        """Let the workers answer what they hold, stop them, and recover the rest here.

        Submissions after this (and before :meth:`start`) are recovered in this process.
        """
        if self._closed:
            return
        self._closed = True
        for task in list(self._restarting):
            task.cancel()
        workers = list(self.workers)
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.close()  # EOF: the worker exits after its last answer
        for worker in workers:
            if worker.reader is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(worker.reader), self.answer_timeout)
                except TimeoutError:
                    self._hung(worker)
                    await worker.reader
        await asyncio.gather(*self._reaping, *(self._reap(w) for w in workers))
        _settle_inline(self._pending)
        self._pending = []
        self._wake_ready()

    async def ready(self) -> None:
        """Wait until every worker is up (after :meth:`start`, or a restart)."""
        if len(self.workers) < self.size and not self._closed:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ready.append(future)
            await future

    def _wake_ready(self) -> None:
        if len(self.workers) >= self.size or self._closed:
            waiters, self._ready = self._ready, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (tests, tools)."""
        return [w.process.pid for w in self.workers]

    async def _spawn(self) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dassie.claims.recovery_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("claim recovery worker did not start (%s); recovering in process", exc)
            self._restart_later(self.restart_delay)
            return
        worker = _Worker(process, time.monotonic())
        if self._closed:
            assert process.stdin is not None
            process.stdin.close()
            await self._reap(worker)
            return
        self.workers.append(worker)
        worker.reader = asyncio.create_task(self._read(worker))
        self._schedule_flush()
        self._wake_ready()

    def _restart_later(self, delay: float) -> None:
        if self._closed:
            return

        async def restart() -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            self.restarts += 1
            await self._spawn()

        task = asyncio.ensure_future(restart(), loop=self._loop)
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def _reap(self, worker: _Worker) -> None:
        try:
            await asyncio.wait_for(worker.process.wait(), self.answer_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            await worker.process.wait()

    # -- work -----------------------------------------------------------

    def submit(self, message: bytes, compact: bytes, done: Done) -> None:
        """Call ``done`` with the signer of ``compact`` (``r || s || recid``) over the
        claim ``message`` (:func:`~payment_channel.claim.claim_message`), or None; on the
        event loop, later (or now, without workers)."""
        if self._closed or not self._started or self.size == 0:
            self.recovered_inline += 1
            _call(done, recover_inline(message, compact))
            return
        pending = self._pending
        pending.append((message, compact, done))
        if len(pending) >= self.max_batch:
            self._flush()  # a full batch goes now: a burst keeps the workers busy meanwhile
        elif not self._flush_scheduled:
            self._schedule_flush()

    async def recover(self, message: bytes, compact: bytes) -> bytes | None:
        """:meth:`submit` as a coroutine."""
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()

        def done(signer: bytes | None) -> None:
            if not future.done():
                future.set_result(signer)

        self.submit(message, compact, done)
        return await future

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Hand queued items to workers with room; with no worker up, recover a batch here."""
        pending = self._pending
        if not pending:
            return
        sent = True
        while pending and sent:  # round robin: a burst is shared between the workers
            sent = False
            for worker in self.workers:
                if pending and len(worker.in_flight) < self.depth:
                    batch = pending[: self.max_batch]
                    del pending[: self.max_batch]
                    self._send(worker, batch)
                    sent = True
        if pending and not self.workers:
            batch = pending[: self.max_batch]
            del pending[: self.max_batch]
            self.recovered_inline += len(batch)
            _settle_inline(batch)
            if pending:
                self._schedule_flush()

    def _send(self, worker: _Worker, batch: list[_Item]) -> None:
        assert worker.process.stdin is not None and self._loop is not None
        worker.process.stdin.write(encode_batch((h, c) for h, c, _ in batch))
        worker.in_flight.append(batch)
        if worker.timer is None:
            worker.timer = self._loop.call_later(self.answer_timeout, self._hung, worker)

    async def _read(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        buffer = b""
        try:
            while True:
                data = await stdout.read(1 << 16)
                if not data:
                    break
                buffer += data
                answered: list[list[bytes | None]] = []
                while len(answered) < len(worker.in_flight):
                    size = len(worker.in_flight[len(answered)]) * ANSWER_SIZE
                    if len(buffer) < size:
                        break
                    answered.append(decode_answers(buffer[:size]))
                    buffer = buffer[size:]
                if buffer and len(answered) == len(worker.in_flight):
                    log.error("claim recovery worker answered more than it was asked")
                    break
                if answered:
                    batches = [worker.in_flight.popleft() for _ in answered]
                    self._rearm(worker)
                    self._flush()  # the worker gets more before this process decides
                    for batch, signers in zip(batches, answered, strict=True):
                        _settle(batch, signers)
        except Exception:  # a broken pipe or a bad answer: treat the worker as dead
            log.exception("claim recovery worker failed")
        finally:
            self._lost(worker)

    def _rearm(self, worker: _Worker) -> None:
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if worker.in_flight and self._loop is not None:
            worker.timer = self._loop.call_later(self.answer_timeout, self._hung, worker)

    def _hung(self, worker: _Worker) -> None:
        worker.timer = None
        log.warning("claim recovery worker %d did not answer; killing it", worker.process.pid)
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()

    def _lost(self, worker: _Worker) -> None:
        """The worker is gone: recover what it held here, and start another."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        unanswered = [item for batch in worker.in_flight for item in batch]
        worker.in_flight.clear()
        self.recovered_inline += len(unanswered)
        _settle_inline(unanswered)
        if self._closed:
            return
        if worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        log.warning("claim recovery worker %d exited; restarting it", worker.process.pid)
        task = asyncio.ensure_future(self._reap(worker), loop=self._loop)
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)
        young = time.monotonic() - worker.started_at < 5.0
        self._restart_later(self.restart_delay if young else 0.0)
        self._schedule_flush()
