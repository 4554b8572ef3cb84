"""The node's Interledger service: the connector core bound to links, ledger and STREAM.

Packets are forwarded by callbacks (see "packets" below), not one task each.
Durability: a packet's hold (pending transfer) is queued for the SQLite writer
but not waited for; its post or void is, and only then does the Fulfill or
Reject go upstream (T00 if that write fails). Holds left pending by a crash
are voided at the next start (:meth:`IlpService.start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from interledger import ildcp, spsp
from interledger.connector import (
    LOCAL,
    Connector,
    ConnectorSettings,
    Forward,
    LimitError,
    Outcome,
    Peer,
    reject,
)
from interledger.errors import DecodeError
from interledger.packet import (
    ErrorCode,
    Fulfill,
    Prepare,
    Reject,
    encode_packet,
    prepare_with_expiry,
)
from interledger.stream.receiver import StreamReceiver
from interledger.stream.sender import StreamSender

from ..ledger import LedgerError, LedgerStore, LedgerUnavailable
from . import accounts
from .btp import Answer, BtpLink, LinkClosed, Waiter, dial
from .config import IlpConfig
from .http import HttpLink
from .ledger import StoreLedger

log = logging.getLogger(__name__)

SPSP_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Link(Protocol):
    """A way to a peer: BTP (:class:`BtpLink`) or ILP over HTTP (:class:`HttpLink`)."""

    def send_prepare(self, raw: bytes, waiter: Waiter) -> int: ...

    def forget(self, request_id: int) -> None: ...


class _Flight:
    """One forwarded Prepare waiting for its answer; finishes exactly once.

    The link calls :meth:`on_response` or :meth:`on_failure`; the loop calls
    :meth:`on_expiry` at the outgoing expiry. The first of them decides.
    """

    __slots__ = (
        "answer",
        "done",
        "forward",
        "link",
        "request_id",
        "service",
        "timer",
        "transfer_id",
    )

    def __init__(
        self, service: IlpService, forward: Forward, transfer_id: int | None, answer: Answer
    ) -> None:
        self.service = service
        self.forward = forward
        self.transfer_id = transfer_id
        self.answer = answer
        self.link: Link | None = None
        self.request_id = 0
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def on_response(self, response: Fulfill | Reject, raw: bytes) -> None:
        if self.done:
            return
        outcome = self.service.connector.settle(self.forward, response, utcnow())
        self._finish(outcome, raw if outcome.response is response else None)

    def on_failure(self, reason: str) -> None:
        if not self.done:
            self._finish(Outcome(False, self.service.connector.unreachable(self.forward, reason)))

    def on_expiry(self) -> None:
        if self.done:
            return
        if self.link is not None:
            self.link.forget(self.request_id)
        self._finish(Outcome(False, self.service.connector.expired(self.forward)))

    def _finish(self, outcome: Outcome, raw: bytes | None = None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        self.service._finish(self.transfer_id, outcome, raw, self.answer)


def utcnow() -> datetime:
    return datetime.now(UTC)


class PaymentError(Exception):
    """An ``ilp.pay`` request that cannot start (bad pointer, SPSP failure)."""


class IlpService:
    """Start with :meth:`start` once the ledger is open; stop with :meth:`stop`."""

    def __init__(self, config: IlpConfig, store: LedgerStore) -> None:
        self.config = config
        self.store = store
        self.ledger = StoreLedger(store, accounts.ilp_asset(config.asset_code))
        self.connector = Connector(
            ConnectorSettings(config.address, config.min_expiry_window, config.max_hold),
            local_account=accounts.NODE,
        )
        for peer in config.peers:
            self.connector.add_peer(
                Peer(
                    peer.name,
                    accounts.peer_account(peer.name),
                    peer.max_packet_amount,
                    peer.credit_limit,
                ),
                peer.routes,
            )
        self.receiver = StreamReceiver(
            config.address, config.stream_secret, config.asset_code, config.asset_scale
        )
        self.tokens = {p.name: p.token for p in config.peers}
        self.links: dict[str, Link] = {}
        self.link_up: dict[str, asyncio.Event] = {p.name: asyncio.Event() for p in config.peers}
        self.retry_delay = 0.05
        """First back-off (seconds) after a temporary failure while paying; doubles each time."""
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Future[Fulfill | Reject]] = set()

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        self.ledger.check_asset()
        await self._void_stale_holds()
        for peer in self.config.peers:
            await self.ledger.ensure_limited(accounts.peer_account(peer.name), peer.credit_limit)
        self._session = aiohttp.ClientSession()
        for peer in self.config.peers:
            if peer.url is None:
                continue
            if peer.url.startswith("http"):
                self.links[peer.name] = HttpLink(peer.name, peer.url, peer.token, self._session)
                self.link_up[peer.name].set()
            else:
                self._tasks.append(asyncio.create_task(self._keep_dialing(peer.name, peer.url)))

    async def _void_stale_holds(self) -> None:
        """Void holds left pending by a previous run: their packets died with its links."""
        stale = [
            t.id
            for t in self.store.ledger.pending.values()
            if accounts.is_ilp_account(t.debit) or accounts.is_ilp_account(t.credit)
        ]
        for transfer_id in stale:
            await self.store.void(transfer_id)
        if stale:
            log.warning("voided %d ILP holds left pending by the previous run", len(stale))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for link in list(self.links.values()):
            if isinstance(link, BtpLink):
                await link.close()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "ILP service not started"
        return self._session

    async def _keep_dialing(self, name: str, url: str) -> None:
        token = self.tokens[name]
        delay = 0.1
        while True:
            try:
                ws = await dial(self.session, url, token, self.config.address)
            except (aiohttp.ClientError, ConnectionError, TimeoutError, DecodeError) as exc:
                log.info("BTP link to %s (%s) not up: %s; retrying in %.1fs", name, url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            await self.run_link(BtpLink(name, ws, self.submit))

    async def run_link(self, link: BtpLink) -> None:
        """Serve one BTP link until it closes (a newer link for the peer replaces it)."""
        old = self.links.get(link.peer)
        self.links[link.peer] = link
        self.link_up[link.peer].set()
        log.info("BTP link to %s up", link.peer)
        if isinstance(old, BtpLink):
            await old.close()
        try:
            await link.run()
        finally:
            if self.links.get(link.peer) is link:
                del self.links[link.peer]
                self.link_up[link.peer].clear()
            log.info("BTP link to %s down", link.peer)

    # -- packets --------------------------------------------------------
    #
    # A Prepare moves through callbacks, not tasks: ``submit`` routes it, holds its
    # amount and sends it on; the next hop's answer (or the link failing, or the
    # expiry timer) reaches its ``_Flight``, which has the connector judge it, then
    # posts or voids the hold and answers upstream once that write is durable.

    def submit(self, source: str, prepare: Prepare, raw: bytes | None, answer: Answer) -> None:
        """Take a Prepare from ``source`` (a peer name, or LOCAL for the node itself).

        ``raw`` is its encoding if known (the forwarded copy is then a splice of it);
        ``answer`` is called exactly once with the Fulfill or Reject.
        """
        if source != LOCAL and ildcp.is_request(prepare):
            answer(self._ildcp(source), None)
            return
        now = utcnow()
        decision = self.connector.route_prepare(source, prepare, now)
        if isinstance(decision, Reject):
            answer(decision, None)
            return
        if decision.next_hop == LOCAL:
            self._spawn(self._deliver_locally(decision), answer)
            return
        accounts_ = self.store.ledger.accounts
        if decision.debit not in accounts_ or decision.credit not in accounts_:
            self._spawn(self._forward_with_accounts(decision, prepare, raw), answer)
            return
        self._forward(decision, prepare, raw, now, answer)

    async def handle_prepare(
        self, source: str, prepare: Prepare, raw: bytes | None = None
    ) -> Fulfill | Reject:
        """Answer a Prepare from ``source`` (a peer name, or LOCAL for the node itself).

        Cancelling the caller does not stop the packet: its hold is still finished.
        """
        future: asyncio.Future[Fulfill | Reject] = asyncio.get_running_loop().create_future()

        def answer(response: Fulfill | Reject, _: bytes | None) -> None:
            if not future.done():
                future.set_result(response)

        self.submit(source, prepare, raw, answer)
        return await future

    def _ildcp(self, source: str) -> Fulfill:
        return ildcp.fulfill(
            ildcp.IldcpResponse(
                f"{self.config.address}.{source}", self.config.asset_scale, self.config.asset_code
            )
        )

    def _spawn(self, work: Coroutine[Any, Any, Fulfill | Reject], answer: Answer) -> None:
        """Run the slow paths (local delivery, first use of an account) as a task."""
        task = asyncio.ensure_future(work)
        self._work.add(task)

        def done(task: asyncio.Task[Fulfill | Reject]) -> None:
            self._work.discard(task)
            if task.cancelled():
                answer(self._internal_error(), None)
            elif (exc := task.exception()) is not None:
                log.error("handling a Prepare failed", exc_info=exc)
                answer(self._internal_error(), None)
            else:
                answer(task.result(), None)

        task.add_done_callback(done)

    async def _deliver_locally(self, forward: Forward) -> Fulfill | Reject:
        result = self.receiver.handle(forward.prepare)
        if isinstance(result, Reject):
            return result
        if result.amount == 0:
            return result.fulfill
        credit = accounts.receive_account(result.account)
        try:
            if accounts.is_pubkey(result.account.lower()):
                await self.ledger.ensure_limited(credit, 0)
            await self.ledger.transfer(forward.debit, credit, result.amount)
        except LimitError:
            return self.connector.limit_reject(forward)
        except LedgerUnavailable:
            return result.on_failure
        return result.fulfill

    async def _forward_with_accounts(
        self, forward: Forward, prepare: Prepare, raw: bytes | None
    ) -> Fulfill | Reject:
        """Create the hold's accounts first (their first packet), then forward."""
        try:
            await self.ledger.ensure_accounts(forward.debit, forward.credit)
        except LedgerUnavailable:
            return self._ledger_down()
        future: asyncio.Future[Fulfill | Reject] = asyncio.get_running_loop().create_future()

        def answer(response: Fulfill | Reject, _: bytes | None) -> None:
            if not future.done():
                future.set_result(response)

        self._forward(forward, prepare, raw, utcnow(), answer)
        return await future

    def _forward(
        self,
        forward: Forward,
        prepare: Prepare,
        raw: bytes | None,
        now: datetime,
        answer: Answer,
    ) -> None:
        link = self.links.get(forward.next_hop)
        if link is None:
            answer(self.connector.unreachable(forward, f"no link to {forward.next_hop}"), None)
            return
        transfer_id = None
        if forward.amount > 0:
            try:
                transfer_id = self.ledger.hold_now(forward.debit, forward.credit, forward.amount)
            except LimitError:
                answer(self.connector.limit_reject(forward), None)
                return
            except LedgerUnavailable:
                answer(self._ledger_down(), None)
                return
        outgoing = forward.prepare
        if raw is not None and outgoing.amount == prepare.amount:
            # Only the expiry differs from what came in: splice it into the bytes.
            encoded = prepare_with_expiry(raw, outgoing.expires_at)
        else:
            encoded = encode_packet(outgoing)
        flight = _Flight(self, forward, transfer_id, answer)
        try:
            flight.request_id = link.send_prepare(encoded, flight)
        except LinkClosed as exc:
            flight.on_failure(str(exc))
            return
        flight.link = link
        delay = (outgoing.expires_at - now).total_seconds()
        flight.timer = asyncio.get_running_loop().call_later(delay, flight.on_expiry)

    def _finish(
        self,
        transfer_id: int | None,
        outcome: Outcome,
        raw: bytes | None,
        answer: Answer,
    ) -> None:
        """Post or void the hold; answer once that is durable (T00 if it cannot be)."""
        if transfer_id is None:
            answer(outcome.response, raw)
            return
        try:
            written = self.ledger.finish_now(transfer_id, post=outcome.post)
        except (LedgerUnavailable, LedgerError) as exc:
            log.error("ILP transfer %d not finished: %s", transfer_id, exc)
            answer(self._ledger_down(), None)
            return

        def durable(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                reason = "cancelled" if future.cancelled() else future.exception()
                log.error("ILP transfer %d not finished: %s", transfer_id, reason)
                answer(self._ledger_down(), None)
            else:
                answer(outcome.response, raw)

        written.add_done_callback(durable)

    def _internal_error(self) -> Reject:
        return reject(ErrorCode.T00_INTERNAL_ERROR, self.config.address, "internal error")

    def _ledger_down(self) -> Reject:
        return reject(ErrorCode.T00_INTERNAL_ERROR, self.config.address, "ledger unavailable")

    # -- SPSP / STREAM --------------------------------------------------

    def spsp_details(self, account: str) -> spsp.SpspResponse:
        destination, secret = self.receiver.connection(account)
        return spsp.SpspResponse(destination, secret)

    async def query_spsp(self, pointer: str) -> spsp.SpspResponse:
        if pointer.startswith(("http://", "https://")):
            url = pointer
        else:
            try:
                url = spsp.resolve_payment_pointer(pointer)
            except DecodeError as exc:
                raise PaymentError(str(exc)) from None
        try:
            async with self.session.get(
                url, headers={"Accept": spsp.CONTENT_TYPE}, timeout=SPSP_TIMEOUT
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise PaymentError(f"SPSP query to {url} answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PaymentError(f"SPSP query to {url} failed: {exc}") from None
        try:
            return spsp.decode_response(body)
        except DecodeError as exc:
            raise PaymentError(f"SPSP response from {url}: {exc}") from None

    async def pay(self, pointer: str, amount: int) -> StreamSender:
        """Pay ``amount`` to a payment pointer over STREAM; returns the finished sender."""
        details = await self.query_spsp(pointer)
        hop = self.connector.routes.lookup(details.destination_account)
        max_packet = None
        if hop is not None and hop in self.connector.peers:
            max_packet = self.connector.peers[hop].max_packet_amount
        sender = StreamSender(
            details.destination_account,
            details.shared_secret,
            amount,
            self.config.address,
            max_packet,
            self.config.max_hold,
        )
        failures = 0
        while (prepare := sender.next_prepare(utcnow())) is not None:
            response = await self.handle_prepare(LOCAL, prepare)
            sender.on_response(prepare, response)
            if isinstance(response, Reject) and response.code.startswith("T"):
                failures += 1
                await asyncio.sleep(min(self.retry_delay * 2 ** (failures - 1), 2.0))
        return sender
