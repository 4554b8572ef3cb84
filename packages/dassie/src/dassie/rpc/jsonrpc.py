"""JSON-RPC 2.0 server framing, without I/O.

:func:`parse` turns one WebSocket frame into requests (and ready-made error
responses for the invalid ones); :func:`result` and :func:`error` build the
responses; :func:`encode` serialises one response or a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
"""Temporarily unable to answer (a chain or the ledger is unavailable)."""

MAX_BATCH = 1000
"""Entries allowed in one batch; a longer batch is refused whole."""

Id = str | int | float | None


class RpcFailure(Exception):
    """Raised by a method to answer with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class InvalidParams(RpcFailure):
    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, f"Invalid params: {message}")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: dict[str, Any]
    id: Id
    notification: bool
    """No ``id`` member: the client wants no answer."""


def error(request_id: Id, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def result(request_id: Id, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def _one(item: Any) -> Request | dict[str, Any]:
    if not isinstance(item, dict):
        return error(None, INVALID_REQUEST, "Invalid Request: not an object")
    request_id = item.get("id")
    if (
        "id" in item and not (request_id is None or isinstance(request_id, str | int | float))
    ) or isinstance(request_id, bool):
        return error(None, INVALID_REQUEST, "Invalid Request: bad id")
    if item.get("jsonrpc") != "2.0":
        return error(request_id, INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"')
    method = item.get("method")
    if not isinstance(method, str):
        return error(request_id, INVALID_REQUEST, "Invalid Request: method must be a string")
    params = item.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return error(request_id, INVALID_PARAMS, "Invalid params: params must be an object")
    return Request(method, params, request_id, "id" not in item)


def parse(
    frame: str | bytes, max_batch: int = MAX_BATCH
) -> tuple[bool, list[Request | dict[str, Any]]]:
    """``(is_batch, items)``: each item a Request to run or an error response to send.

    An empty batch, or one of more than ``max_batch`` entries, is answered with one
    Invalid Request error (not a batch) and none of its entries is run.
    """
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return False, [error(None, PARSE_ERROR, "Parse error")]
    if isinstance(message, list):
        if not message:
            return False, [error(None, INVALID_REQUEST, "Invalid Request: empty batch")]
        if len(message) > max_batch:
            return False, [
                error(
                    None,
                    INVALID_REQUEST,
                    f"Invalid Request: batch of {len(message)} requests,"
                    f" at most {max_batch} allowed",
                )
            ]
        return True, [_one(item) for item in message]
    return False, [_one(message)]


def encode(message: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """UTF-8 JSON of one response or a batch of them (sent as a text frame)."""
    return orjson.dumps(message)
