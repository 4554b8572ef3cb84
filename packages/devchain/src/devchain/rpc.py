"""The JSON-RPC 2.0 envelope: request bytes in, response bytes out (no I/O).

Handles single requests, batches and notifications; every failure becomes a
JSON-RPC error object, so a bad request never takes the server down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .wire import RpcError

__all__ = ["INTERNAL_ERROR", "INVALID_REQUEST", "MAX_NESTING", "PARSE_ERROR", "handle_payload"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

MAX_NESTING = 64

Call = Callable[[str, Any], Any]
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _valid_id(request_id: Any) -> bool:
    return request_id is None or (
        isinstance(request_id, str | int | float) and not isinstance(request_id, bool)
    )


def _handle_one(request: Any, call: Call) -> dict[str, Any] | None:
    if not isinstance(request, dict):
        return _error(None, INVALID_REQUEST, "invalid request: not a JSON object")
    is_notification = "id" not in request
    request_id = request.get("id")
    if not _valid_id(request_id):
        return _error(None, INVALID_REQUEST, "invalid request: bad id")
    method = request.get("method")
    if not isinstance(method, str) or request.get("jsonrpc", "2.0") != "2.0":
        return _error(
            request_id, INVALID_REQUEST, "invalid request: needs jsonrpc 2.0 and a method"
        )
    try:
        result = call(method, request.get("params", []))
        response = {"jsonrpc": "2.0", "id": request_id, "result": result}
    except RpcError as exc:
        response = {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}
    except Exception as exc:  # a bug in a handler must not take the server down
        response = _error(
            request_id, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
        )
    return None if is_notification else response


def _nesting_depth(body: bytes) -> int:
    """How deeply arrays/objects nest in ``body`` (strings ignored), without recursion."""
    structure = _STRING.sub(b"", _ESCAPE.sub(b"", body)).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in structure:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def handle_payload(body: bytes, call: Call) -> bytes | None:
    """Answer one HTTP body; ``None`` when it held only notifications."""
    # py-evm raises Python's recursion limit to 100000 at import, so a deeply
    # nested body would overflow the C stack inside json.loads: refuse it first.
    if _nesting_depth(body) > MAX_NESTING:
        return _encode(_error(None, PARSE_ERROR, f"parse error: nested deeper than {MAX_NESTING}"))
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return _encode(_error(None, PARSE_ERROR, f"parse error: {exc}"))
    if isinstance(payload, list):
        if not payload:
            return _encode(_error(None, INVALID_REQUEST, "invalid request: empty batch"))
        responses = [r for r in (_handle_one(item, call) for item in payload) if r is not None]
        return _encode(responses) if responses else None
    response = _handle_one(payload, call)
    return None if response is None else _encode(response)


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
