"""Checks event signatures on a background thread, beside the event loop.

A BIP-340 check costs ~50 µs of CPU, the largest single cost of ingesting an
event. :class:`SignatureVerifier` runs the checks on one thread that releases
the GIL during each one, so the event loop keeps reading, hashing and
answering on one core while signatures are checked on the other. The checks
asked for in one event-loop step are handed over together at its end, and
whatever has been handed over while the thread works is checked as one batch
and answered with one wake-up of the loop. Before :meth:`start` (and after
:meth:`close`) checks run inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading

from nostr_protocol.event import Event, verify_signature

from .threadname import name_native_thread

_Job = tuple[Event, asyncio.Future[bool]]


def _resolve(jobs: list[_Job], answers: list[bool]) -> None:
    for (_, future), ok in zip(jobs, answers, strict=True):
        if not future.done():
            future.set_result(ok)


class SignatureVerifier:
    """``await verify(event)`` -> True when ``event.sig`` is its author's signature."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outgoing: list[_Job] = []
        """Checks asked for during the current event-loop step, handed to the thread
        together at its end (one queue put and one thread wake-up per step)."""

    def start(self) -> None:
        """Start the checking thread (answers go to the running event loop)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="sig-verify", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._hand_over()
            self._jobs.put(None)
            await asyncio.to_thread(thread.join)

    async def verify(self, event: Event) -> bool:
        if self._thread is None:
            return verify_signature(event.id, event.pubkey, event.sig)
        assert self._loop is not None
        future: asyncio.Future[bool] = self._loop.create_future()
        if not self._outgoing:
            self._loop.call_soon(self._hand_over)
        self._outgoing.append((event, future))
        return await future

    def _hand_over(self) -> None:
        jobs, self._outgoing = self._outgoing, []
        if not jobs:
            return
        if self._thread is None:  # closed meanwhile: check inline
            for event, future in jobs:
                if not future.done():
                    future.set_result(verify_signature(event.id, event.pubkey, event.sig))
            return
        self._jobs.put(jobs)

    def _run(self) -> None:
        name_native_thread("sig-verify")
        jobs = self._jobs
        loop = self._loop
        assert loop is not None
        while True:
            first = jobs.get()
            stop = first is None
            batch = [] if first is None else list(first)
            while not stop:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.extend(more)
            if batch:
                answers = [
                    verify_signature(e.id, e.pubkey, e.sig, release_gil=True) for e, _ in batch
                ]
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(_resolve, batch, answers)
            if stop:
                return
