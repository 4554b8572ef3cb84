"""The node's RPC methods (contract: Node RPC), bound to a running node."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..claims.service import VerificationUnavailable
from ..ledger import LedgerError, LedgerUnavailable, UnknownAccount
from .jsonrpc import SERVER_ERROR, InvalidParams, RpcFailure

if TYPE_CHECKING:
    from ..node import Node

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,77})\Z")
_CHANNEL_ID = re.compile(r"0x[0-9a-fA-F]{64}\Z")
_CLAIM_FIELDS = ("channelId", "claimAmount", "nonce", "signature", "currency")
_EVENT_ID = re.compile(r"[0-9a-f]{64}\Z")


def _amount(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise InvalidParams(f"{name} must be a decimal string")
    return int(value)


def _channel_id(params: dict[str, Any]) -> str:
    value = params.get("channelId")
    if not isinstance(value, str) or not _CHANNEL_ID.match(value):
        raise InvalidParams("channelId must be 0x + 64 hex")
    return value.lower()


def _event_id(params: dict[str, Any]) -> str | None:
    """The optional ``eventId`` (beyond the contract): the Nostr event being paid for."""
    value = params.get("eventId")
    if value is None:
        return None
    if not isinstance(value, str) or not _EVENT_ID.match(value):
        raise InvalidParams("eventId must be 64 lowercase hex")
    return value


def methods(node: Node) -> dict[str, Handler]:
    """Method name -> coroutine taking the params object."""

    async def get_info(params: dict[str, Any]) -> Any:
        return node.info()

    async def verify_payment_claim(params: dict[str, Any]) -> Any:
        missing = [f for f in (*_CLAIM_FIELDS, "minAmount") if f not in params]
        if missing:
            raise InvalidParams("missing " + ", ".join(missing))
        min_amount = _amount(params, "minAmount")
        event_id = _event_id(params)
        try:
            verified = await node.claims.verify_params(
                params["channelId"],
                params["claimAmount"],
                params["nonce"],
                params["signature"],
                params["currency"],
                min_amount,
                event_id,
            )
        except VerificationUnavailable as exc:
            raise RpcFailure(SERVER_ERROR, f"chain unavailable: {exc}") from None
        except LedgerUnavailable as exc:
            raise RpcFailure(SERVER_ERROR, str(exc)) from None
        return verified.to_json(node.claims.clock(), node.claims.expiry_margin)

    async def get_channel_state(params: dict[str, Any]) -> Any:
        channel_id = _channel_id(params)
        try:
            channel = await node.claims.channel(channel_id)
        except VerificationUnavailable as exc:
            raise RpcFailure(SERVER_ERROR, f"chain unavailable: {exc}") from None
        if channel is None:
            raise RpcFailure(SERVER_ERROR + 1, "channel not found", {"channelId": channel_id})
        best = node.claims.best_claim(channel_id)
        return {
            "channel": channel.to_json(node.claims.clock(), node.claims.expiry_margin),
            "bestClaim": None if best is None else best.to_json(),
        }

    async def get_balance(params: dict[str, Any]) -> Any:
        account = params.get("account")
        if not isinstance(account, str):
            raise InvalidParams("account must be a string")
        try:
            return node.store.balance(account).to_json()
        except UnknownAccount:
            raise InvalidParams(f"no account {account}") from None

    async def get_accounts(params: dict[str, Any]) -> Any:
        """Every account (each with its ``asset``), optionally only those under ``prefix``
        and only those in ``asset`` (``LOCAL/ETH``, ``ilp/ETH``)."""
        prefix = params.get("prefix", "")
        if not isinstance(prefix, str):
            raise InvalidParams("prefix must be a string")
        asset = params.get("asset")
        if asset is not None and not isinstance(asset, str):
            raise InvalidParams("asset must be a string")
        return {
            "accounts": [
                a.to_json()
                for a in node.store.accounts()
                if a.path.startswith(prefix) and (asset is None or a.asset == asset)
            ]
        }

    async def settle_channel(params: dict[str, Any]) -> Any:
        channel_id = _channel_id(params)
        if node.settlement is None:
            raise RpcFailure(SERVER_ERROR, "settlement is not enabled")
        try:
            tx_hash = await node.settlement.settle(channel_id, reason="rpc")
        except (LedgerError, ValueError) as exc:
            raise InvalidParams(str(exc)) from None
        except RuntimeError as exc:
            raise RpcFailure(SERVER_ERROR, str(exc)) from None
        return {"txHash": tx_hash}

    return {
        "node.getInfo": get_info,
        "payment.verifyPaymentClaim": verify_payment_claim,
        "payment.getChannelState": get_channel_state,
        "ledger.getBalance": get_balance,
        "ledger.getAccounts": get_accounts,
        "settlement.settleChannel": settle_channel,
    }
