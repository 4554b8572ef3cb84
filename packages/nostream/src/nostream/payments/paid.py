"""The paid gate: prices an event, has the Dassie node verify its claim, maps the answer.

Every refusal's message starts with the contract's OK prefix; a node that is
down or slow refuses with ``error: payment verification temporarily unavailable``
(never lets an event through unpaid).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from nostr_protocol.event import Event
from payment_channel.tag import MalformedClaim, find_payment_tag, parse_payment_tag

from .gate import Charge
from .jsonrpc import RpcError
from .pricing import Pricing
from .rpc_client import RpcUnavailable

log = logging.getLogger("nostream.payments")

PAYMENT_REQUIRED = "restricted: payment required"
MALFORMED = "invalid: malformed payment claim"
UNSUPPORTED_CURRENCY = "restricted: unsupported payment currency"
UNAVAILABLE = "error: payment verification temporarily unavailable"

REASON_MESSAGES: dict[str, str] = {
    "malformed-claim": MALFORMED,
    "insufficient-payment": "restricted: insufficient payment",
    "invalid-signature": "restricted: invalid payment signature",
    "invalid-nonce": "restricted: invalid payment nonce",
    "channel-not-found": "restricted: payment channel not found",
    "channel-expired": "restricted: payment channel expired",
    "channel-closed": "restricted: payment channel closed",
    "insufficient-channel-balance": "restricted: insufficient channel balance",
    "unsupported-currency": UNSUPPORTED_CURRENCY,
}
FREE_TIER_COUNTER = "free-tier-events"


class CounterStore(Protocol):
    """The part of the event store the free tier needs."""

    async def bump_counter(self, name: str, key: str, limit: int) -> bool: ...


class NodeRpc(Protocol):
    """The part of :class:`DassieRpcClient` the gate uses."""

    @property
    def connected(self) -> bool: ...

    last_error: str | None
    url: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


def message_for_reason(reason: object) -> str:
    """The OK message for a node's ``{valid: false, reason}``."""
    if isinstance(reason, str) and reason in REASON_MESSAGES:
        return REASON_MESSAGES[reason]
    return f"restricted: payment rejected ({reason})"


class NodePaidPublishing:
    """A :class:`~nostream.payments.gate.PaymentGate` that charges through the Dassie node."""

    def __init__(self, rpc: NodeRpc, pricing: Pricing, store: CounterStore | None = None) -> None:
        self.rpc = rpc
        self.pricing = pricing
        self.store = store
        self.node_info: dict[str, Any] | None = None
        self.prepaid_currency: str | None = None
        """The asset of the node's prepaid (Interledger) balances, from ``ilp.getInfo``."""
        self._ilp_info_known = False

    async def start(self) -> None:
        await self.rpc.start()

    async def close(self) -> None:
        await self.rpc.close()

    async def refresh_node_info(self) -> None:
        """Fetch ``node.getInfo`` (called on every (re)connect) for NIP-11 ``payments``."""
        info = await self.rpc.call("node.getInfo", {})
        if isinstance(info, dict):
            self.node_info = info
        await self._refresh_ilp_info()

    async def _refresh_ilp_info(self) -> None:
        """Learn the asset of the node's prepaid balances (``ilp.getInfo``)."""
        try:
            ilp = await self.rpc.call("ilp.getInfo", {})
        except RpcError:  # a node without Interledger: no prepaid balances
            ilp = None
        self.prepaid_currency = ilp.get("assetCode") if isinstance(ilp, dict) else None
        self._ilp_info_known = True

    async def charge(self, event: Event) -> Charge:
        if self.pricing.is_free(event.kind, event.pubkey):
            return Charge(accepted=True, details={"free": "exempt"})
        tag = find_payment_tag(event.tags)
        if tag is None:
            if 0 in (self.pricing.price(event.kind, c) for c in self.pricing.currencies):
                # A kind priced 0 is free without a tag too (spendPrepaid refuses amount 0).
                return Charge(accepted=True, details={"free": "price-zero"})
            if await self._free_tier(event.pubkey):
                return Charge(accepted=True, details={"free": "tier"})
            prepaid = await self._spend_prepaid(event)
            if prepaid is not None:
                return prepaid
            return Charge(False, self._required_message(event.kind))
        try:
            claim = parse_payment_tag(tag)
        except MalformedClaim as exc:
            return Charge(False, f"{MALFORMED}: {exc}")
        price = self.pricing.price(event.kind, claim.currency)
        if price is None:
            priced = ", ".join(sorted(self.pricing.currencies)) or "none"
            return Charge(False, f"{UNSUPPORTED_CURRENCY}: {claim.currency} (priced: {priced})")
        if price == 0:
            return Charge(accepted=True, details={"free": "price-zero"})
        # The tag's own fields, now known well formed (the node reads hex in any case);
        # eventId: asked again for this event after a timeout, the node answers the
        # same claim as the first time instead of refusing its nonce.
        params: dict[str, Any] = {
            "channelId": tag[2],
            "claimAmount": tag[3],
            "nonce": tag[4],
            "signature": tag[5],
            "currency": claim.currency,
            "minAmount": str(price),
            "eventId": event.id,
        }
        try:
            answer = await self.rpc.call("payment.verifyPaymentClaim", params)
        except RpcUnavailable as exc:
            log.warning("payment for %s not verified: %s", event.id, exc)
            return Charge(False, UNAVAILABLE)
        except RpcError as exc:
            if exc.code == -32602:
                return Charge(False, f"{MALFORMED}: {exc.message}")
            log.warning("node refused verifyPaymentClaim for %s: %s", event.id, exc)
            return Charge(False, UNAVAILABLE)
        if not isinstance(answer, dict):
            log.warning("node answered verifyPaymentClaim with %r", answer)
            return Charge(False, UNAVAILABLE)
        if answer.get("valid") is True:
            return Charge(
                accepted=True,
                details={
                    "channelId": claim.channel_id,
                    "credited": answer.get("credited"),
                    "price": price,
                    "currency": claim.currency,
                },
            )
        reason = answer.get("reason")
        message = message_for_reason(reason)
        if reason == "insufficient-payment":
            message = f"{message}: {price} {claim.currency} base units due for kind {event.kind}"
        return Charge(False, message, details={"reason": reason})

    async def _spend_prepaid(self, event: Event) -> Charge | None:
        """Pay from the author's prepaid balance (funded over Interledger), if it covers the price.

        None when it does not, or when the node cannot say: an event without a
        payment tag is then refused as ``payment required``.
        """
        try:
            if not self._ilp_info_known:  # an event right after the link came up
                await self._refresh_ilp_info()
            currency = self.prepaid_currency
            if currency is None:
                return None
            price = self.pricing.price(event.kind, currency)
            if price is None:
                return None
            params = {"pubkey": event.pubkey, "amount": str(price), "currency": currency}
            answer = await self.rpc.call("payment.spendPrepaid", params)
        except (RpcUnavailable, RpcError) as exc:
            log.info("prepaid balance of %s not checked: %s", event.pubkey, exc)
            return None
        if isinstance(answer, dict) and answer.get("valid") is True:
            return Charge(
                accepted=True,
                details={"prepaid": True, "price": price, "currency": currency},
            )
        return None

    async def _free_tier(self, pubkey: str) -> bool:
        limit = self.pricing.free_tier_events
        if limit <= 0 or self.store is None:
            return False
        return await self.store.bump_counter(FREE_TIER_COUNTER, pubkey, limit)

    def _required_message(self, kind: int) -> str:
        prices = [
            f"{amount} {unit}"
            for unit in sorted(self.pricing.currencies)
            if (amount := self.pricing.price(kind, unit)) is not None
        ]
        due = " or ".join(prices) if prices else "see NIP-11 fees"
        return f"{PAYMENT_REQUIRED}: {due} (base units) per kind {kind} event"

    def health(self) -> tuple[str, dict[str, Any]]:
        details: dict[str, Any] = {"url": self.rpc.url}
        if self.rpc.connected:
            return "ok", details
        if self.rpc.last_error:
            details["error"] = self.rpc.last_error
        return "disconnected", details

    def nip11_fees(self) -> dict[str, Any] | None:
        return self.pricing.nip11_fees()

    def nip11_payments(self) -> dict[str, Any] | None:
        """NIP-11 ``payments``: how to pay this relay (tag form, chains, recipient address)."""
        doc: dict[str, Any] = {
            "tag": "payment",
            "method": "ilp",
            "currencies": sorted(self.pricing.currencies),
        }
        info = self.node_info
        if info is not None:
            chains = [
                {
                    "name": c.get("name"),
                    "chainId": c.get("chainId"),
                    "factory": c.get("factory"),
                    "recipient": c.get("relayAddress"),
                    "assets": c.get("assets", []),
                }
                for c in info.get("chains", [])
                if isinstance(c, dict)
            ]
            doc["chains"] = chains
            doc["ilpAddress"] = info.get("ilpAddress")
        return doc
