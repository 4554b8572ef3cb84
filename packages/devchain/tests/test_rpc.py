"""The JSON-RPC envelope alone (no chain, no socket): odd bodies get error objects."""

from __future__ import annotations

import json
from typing import Any

from devchain.rpc import handle_payload
from devchain.wire import RpcError


def echo(method: str, params: Any) -> Any:
    if method == "boom":
        raise RuntimeError("handler bug")
    if method == "fail":
        raise RpcError(-32000, "nope", "0x01")
    return {"method": method, "params": params}


def answer(body: bytes) -> Any:
    raw = handle_payload(body, echo)
    assert raw is not None
    return json.loads(raw)


def test_bodies_that_are_not_json_are_parse_errors() -> None:
    for body in (b"", b"\xff\xfe\x00garbage", b"{", b"[" * 100_000 + b"]" * 100_000):
        reply = answer(body)
        assert reply["id"] is None and reply["error"]["code"] == -32700


def test_results_errors_and_handler_bugs_keep_their_ids() -> None:
    assert answer(b'{"jsonrpc":"2.0","id":"a","method":"m","params":[1]}')["result"] == {
        "method": "m",
        "params": [1],
    }
    failed = answer(b'{"jsonrpc":"2.0","id":2,"method":"fail"}')
    assert failed == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {"code": -32000, "message": "nope", "data": "0x01"},
    }
    bug = answer(b'{"jsonrpc":"2.0","id":3,"method":"boom"}')
    assert bug["id"] == 3 and bug["error"]["code"] == -32603


def test_invalid_requests() -> None:
    for body in (
        b'"just a string"',
        b'{"jsonrpc":"1.0","id":1,"method":"m"}',
        b'{"id":[1],"method":"m"}',
    ):
        assert answer(body)["error"]["code"] == -32600
    assert handle_payload(b'[{"jsonrpc":"2.0","method":"m"}]', echo) is None
