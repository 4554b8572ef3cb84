"""The sans-I/O JSON-RPC 2.0 client core and the reconnect backoff."""

from __future__ import annotations

import random

import orjson
import pytest

from nostream.payments.jsonrpc import Backoff, JsonRpcClient, ProtocolViolation, RpcError


def test_requests_get_distinct_ids_and_valid_frames() -> None:
    core = JsonRpcClient()
    id1, frame1 = core.request("node.getInfo")
    id2, frame2 = core.request("payment.getChannelState", {"channelId": "0x01"})
    assert id1 != id2 and core.pending == 2
    assert orjson.loads(frame1) == {
        "jsonrpc": "2.0",
        "id": id1,
        "method": "node.getInfo",
        "params": {},
    }
    assert orjson.loads(frame2)["params"] == {"channelId": "0x01"}


def test_responses_match_by_id_in_any_order_and_batches() -> None:
    core = JsonRpcClient()
    a, _ = core.request("a")
    b, _ = core.request("b")
    c, _ = core.request("c")
    [rb] = core.receive(orjson.dumps({"jsonrpc": "2.0", "id": b, "result": {"x": 1}}))
    assert (rb.id, rb.result, rb.error) == (b, {"x": 1}, None)
    batch = [
        {"jsonrpc": "2.0", "id": c, "error": {"code": -32601, "message": "no such method"}},
        {"jsonrpc": "2.0", "id": a, "result": None},
    ]
    ra_rc = {r.id: r for r in core.receive(orjson.dumps(batch))}
    assert ra_rc[a].result is None and ra_rc[a].error is None
    err = ra_rc[c].error
    assert isinstance(err, RpcError) and err.code == -32601 and err.message == "no such method"
    assert core.pending == 0


def test_late_unknown_and_duplicate_answers_are_dropped() -> None:
    core = JsonRpcClient()
    a, _ = core.request("a")
    core.forget(a)
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "id": a, "result": 1})) == []
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "id": 999, "result": 1})) == []
    b, _ = core.request("b")
    frame = orjson.dumps({"jsonrpc": "2.0", "id": b, "result": 2})
    assert len(core.receive(frame)) == 1
    assert core.receive(frame) == []
    # A notification from the server is not a response.
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "method": "tick", "params": {}})) == []


def test_forget_all_returns_pending_ids() -> None:
    core = JsonRpcClient()
    ids = [core.request("m")[0] for _ in range(3)]
    assert core.forget_all() == ids
    assert core.pending == 0


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1]",
        b'{"id": 1, "result": 1}',
        b'{"jsonrpc": "2.0", "id": 1}',
        b'{"jsonrpc": "2.0", "id": "x", "result": 1}',
        b'{"jsonrpc": "2.0", "id": 1, "error": "boom"}',
    ],
)
def test_frames_that_are_not_json_rpc_raise(frame: bytes) -> None:
    core = JsonRpcClient()
    core.request("m")
    with pytest.raises(ProtocolViolation):
        core.receive(frame)
    assert core.pending == 1  # nothing lost


def test_backoff_grows_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(40)]
    assert all(0.1 <= d <= 30.0 for d in delays)
    caps = [min(30.0, 0.1 * 2**i) for i in range(40)]
    assert all(d <= cap + 1e-9 for d, cap in zip(delays, caps, strict=True))
    assert max(delays[-10:]) > 10  # it really backs off towards 30 s
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)
