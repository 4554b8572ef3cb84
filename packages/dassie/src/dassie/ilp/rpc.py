"""The ILP RPC methods: ``ilp.getInfo``, ``ilp.pay`` and the prepaid balances
(``payment.spendPrepaid``, ``payment.getPrepaidBalance``)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..ledger import LedgerUnavailable
from ..rpc.jsonrpc import SERVER_ERROR, InvalidParams, RpcFailure
from . import prepaid
from .accounts import is_pubkey
from .service import IlpService, PaymentError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,77})\Z")


def _amount(params: dict[str, Any], name: str = "amount") -> int:
    value = params.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.match(value):
        number = int(value)
    else:
        raise InvalidParams(f"{name} must be a decimal string")
    if number <= 0:
        raise InvalidParams(f"{name} must be positive")
    return number


def _pubkey(params: dict[str, Any]) -> str:
    value = params.get("pubkey")
    if not isinstance(value, str) or not is_pubkey(value):
        raise InvalidParams("pubkey must be 64 lowercase hex digits")
    return value


def ilp_methods(get_service: Callable[[], IlpService]) -> dict[str, Handler]:
    async def pay(params: dict[str, Any]) -> Any:
        pointer = params.get("paymentPointer")
        if not isinstance(pointer, str) or not pointer:
            raise InvalidParams("paymentPointer must be a payment pointer ($host/path) or URL")
        amount = _amount(params)
        try:
            sender = await get_service().pay(pointer, amount)
        except PaymentError as exc:
            raise RpcFailure(SERVER_ERROR, str(exc)) from None
        result: dict[str, Any] = {
            "success": sender.failure is None and sender.delivered == amount,
            "amount": str(amount),
            "delivered": str(sender.delivered),
            "packets": sender.sequence,
        }
        if sender.failure is not None:
            result["error"] = sender.failure
        return result

    async def spend_prepaid(params: dict[str, Any]) -> Any:
        pubkey = _pubkey(params)
        amount = _amount(params)
        service = get_service()
        currency = params.get("currency", service.config.asset_code)
        if currency != service.config.asset_code:
            return {"valid": False, "reason": "unsupported-currency"}
        try:
            ok = await prepaid.spend(service.store, pubkey, amount)
        except LedgerUnavailable as exc:
            raise RpcFailure(SERVER_ERROR, str(exc)) from None
        remaining = str(prepaid.balance(service.store, pubkey))
        if not ok:
            return {"valid": False, "reason": "insufficient-payment", "balance": remaining}
        return {"valid": True, "credited": str(amount), "balance": remaining}

    async def get_prepaid(params: dict[str, Any]) -> Any:
        pubkey = _pubkey(params)
        service = get_service()
        return {
            "pubkey": pubkey,
            "balance": str(prepaid.balance(service.store, pubkey)),
            "currency": service.config.asset_code,
        }

    async def get_info(params: dict[str, Any]) -> Any:
        config = get_service().config
        return {
            "address": config.address,
            "assetCode": config.asset_code,
            "assetScale": config.asset_scale,
        }

    return {
        "ilp.getInfo": get_info,
        "ilp.pay": pay,
        "payment.spendPrepaid": spend_prepaid,
        "payment.getPrepaidBalance": get_prepaid,
    }
