"""The node's Interledger service: the connector core bound to links, ledger and STREAM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Protocol

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
from interledger.packet import ErrorCode, Fulfill, Prepare, Reject
from interledger.stream.receiver import StreamReceiver
from interledger.stream.sender import StreamSender

from ..ledger import LedgerStore, LedgerUnavailable
from . import accounts
from .btp import BtpLink, LinkClosed, dial
from .config import IlpConfig
from .http import HttpLink
from .ledger import StoreLedger

log = logging.getLogger(__name__)

SPSP_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Link(Protocol):
    async def send(self, prepare: Prepare) -> Fulfill | Reject: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class PaymentError(Exception):
    """An ``ilp.pay`` request that cannot start (bad pointer, SPSP failure)."""


class IlpService:
    """Start with :meth:`start` once the ledger is open; stop with :meth:`stop`."""

    def __init__(self, config: IlpConfig, store: LedgerStore) -> None:
        self.config = config
        self.store = store
        self.ledger = StoreLedger(store)
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

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
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
            await self.run_link(BtpLink(name, ws, self.handle_prepare))

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

    async def handle_prepare(self, source: str, prepare: Prepare) -> Fulfill | Reject:
        """Answer a Prepare from ``source`` (a peer name, or LOCAL for the node itself)."""
        if source != LOCAL and ildcp.is_request(prepare):
            return ildcp.fulfill(
                ildcp.IldcpResponse(
                    f"{self.config.address}.{source}",
                    self.config.asset_scale,
                    self.config.asset_code,
                )
            )
        decision = self.connector.route_prepare(source, prepare, utcnow())
        if isinstance(decision, Reject):
            return decision
        if decision.next_hop == LOCAL:
            return await self._deliver_locally(decision)
        return await self._forward(decision)

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

    async def _forward(self, forward: Forward) -> Fulfill | Reject:
        link = self.links.get(forward.next_hop)
        if link is None:
            return self.connector.unreachable(forward, f"no link to {forward.next_hop}")
        transfer_id = None
        if forward.amount > 0:
            try:
                transfer_id = await self.ledger.hold(forward.debit, forward.credit, forward.amount)
            except LimitError:
                return self.connector.limit_reject(forward)
            except LedgerUnavailable:
                return self._ledger_down()
        outcome = Outcome(False, self.connector.expired(forward))
        try:
            timeout = (forward.prepare.expires_at - utcnow()).total_seconds()
            try:
                async with asyncio.timeout(max(timeout, 0)):
                    response = await link.send(forward.prepare)
            except TimeoutError:
                pass
            except LinkClosed as exc:
                outcome = Outcome(False, self.connector.unreachable(forward, str(exc)))
            else:
                outcome = self.connector.settle(forward, response, utcnow())
        finally:
            if transfer_id is not None:
                # Shielded so a cancelled caller cannot leave the hold pending.
                finish = self.ledger.commit if outcome.post else self.ledger.release
                try:
                    await asyncio.shield(finish(transfer_id))
                except LedgerUnavailable as exc:
                    log.error("ILP transfer %d not finished: %s", transfer_id, exc)
                    outcome = Outcome(False, self._ledger_down())
        return outcome.response

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
