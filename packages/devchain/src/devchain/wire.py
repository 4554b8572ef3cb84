"""The JSON-RPC wire format: parse request params, format results, error objects.

Ethereum JSON-RPC (EIP-1474) encodes quantities as ``0x`` hex without leading
zeros, data as ``0x`` hex bytes and keys in camelCase; eth-tester speaks
Python (ints, bytes, snake_case). These functions convert between the two and
raise :class:`RpcError` (-32602) for anything malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from eth_utils.address import to_checksum_address

from .accounts import CHAIN_ID

_CAMEL = re.compile(r"_([a-z0-9])")

# JSON-RPC error codes (https://www.jsonrpc.org/specification, EIP-1474, geth).
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
SERVER_ERROR = -32000
EXECUTION_REVERTED = 3

Json = Any
Params = list[Json]


class RpcError(Exception):
    """A JSON-RPC error object: ``{"code", "message", "data"?}``."""

    def __init__(self, code: int, message: str, data: Json = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Json]:
        error: dict[str, Json] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def param(params: Params, index: int, default: Json = ...) -> Json:
    """Positional parameter ``index``; ``default`` when absent or null (else required)."""
    if index < len(params) and params[index] is not None:
        return params[index]
    if default is ...:
        raise RpcError(INVALID_PARAMS, f"missing value for required argument {index}")
    return default


def parse_quantity(value: Json, what: str) -> int:
    """Parse a JSON-RPC quantity: ``0x``-hex string (or, leniently, a JSON integer)."""
    if isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, f"invalid {what}: {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"invalid {what}: {value!r}")


def parse_data(value: Json, what: str) -> bytes:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"invalid {what}: {value!r}")


def parse_address(value: Json, what: str = "address") -> str:
    raw = parse_data(value, what)
    if len(raw) != 20:
        raise RpcError(INVALID_PARAMS, f"invalid {what}: {value!r}")
    return to_checksum_address(raw)


def parse_hash(value: Json, what: str) -> str:
    raw = parse_data(value, what)
    if len(raw) != 32:
        raise RpcError(INVALID_PARAMS, f"invalid {what}: {value!r}")
    return "0x" + raw.hex()


def to_wire(value: Json) -> Json:
    """eth-tester's output (snake_case keys, ints, bytes) -> JSON-RPC wire form."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {_CAMEL.sub(lambda m: m.group(1).upper(), k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def wire_transaction(tx: dict[str, Json]) -> dict[str, Json]:
    wire = to_wire(tx)
    wire["input"] = wire.pop("data", "0x")
    if wire.get("to") == "":
        wire["to"] = None
    return cast(dict[str, Json], wire)


def wire_block(block: dict[str, Json]) -> dict[str, Json]:
    transactions = block["transactions"]
    wire = to_wire({k: v for k, v in block.items() if k != "transactions"})
    wire["miner"] = wire.pop("coinbase", "0x" + "00" * 20)
    wire["logsBloom"] = "0x" + int(block.get("logs_bloom", 0)).to_bytes(256, "big").hex()
    wire["transactions"] = [
        wire_transaction(tx) if isinstance(tx, dict) else tx for tx in transactions
    ]
    return cast(dict[str, Json], wire)


def wire_receipt(receipt: dict[str, Json]) -> dict[str, Json]:
    wire = to_wire({k: v for k, v in receipt.items() if k != "state_root"})
    wire["logs"] = [wire_log(log) for log in receipt["logs"]]
    wire.setdefault("type", "0x2")
    return cast(dict[str, Json], wire)


def wire_log(log: dict[str, Json]) -> dict[str, Json]:
    wire = to_wire({k: v for k, v in log.items() if k != "type"})
    wire["removed"] = False
    return cast(dict[str, Json], wire)


# JSON-RPC transaction object -> eth-tester transaction dict.
_TX_KEYS: dict[str, tuple[str, Callable[[Json, str], Json]]] = {
    "from": ("from", parse_address),
    "to": ("to", parse_address),
    "gas": ("gas", parse_quantity),
    "gasPrice": ("gas_price", parse_quantity),
    "maxFeePerGas": ("max_fee_per_gas", parse_quantity),
    "maxPriorityFeePerGas": ("max_priority_fee_per_gas", parse_quantity),
    "value": ("value", parse_quantity),
    "nonce": ("nonce", parse_quantity),
    "data": ("data", parse_data),
    "input": ("data", parse_data),
    "chainId": ("chain_id", parse_quantity),
}


def parse_transaction(value: Json) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise RpcError(INVALID_PARAMS, "a transaction is a JSON object")
    tx: dict[str, Json] = {}
    for key, item in value.items():
        if key in _TX_KEYS and item is not None:
            name, parse = _TX_KEYS[key]
            parsed = parse(item, key)
            tx[name] = "0x" + parsed.hex() if isinstance(parsed, bytes) else parsed
    if "chain_id" in tx and tx.pop("chain_id") != CHAIN_ID:
        raise RpcError(SERVER_ERROR, f"invalid chain id: expected {CHAIN_ID}")
    if "gas_price" in tx and "max_fee_per_gas" in tx:
        raise RpcError(INVALID_PARAMS, "both gasPrice and maxFeePerGas specified")
    return tx
