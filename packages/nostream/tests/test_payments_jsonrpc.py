"""The sans-I/O JSON-RPC 2.0 client core and the reconnect backoff."""

from __future__ import annotations

import random

import orjson
import pytest

from nostream.payments.jsonrpc import Backoff, JsonRpcClient, ProtocolViolation, RpcError


def send(core: JsonRpcClient, method: str, params: dict[str, object] | None = None) -> int:
    """Queue one request and flush it at once (as an idle link would)."""
    request_id = core.queue(method, params)
    assert core.flush(0.0)
    return request_id


def test_requests_get_distinct_ids_and_valid_frames() -> None:
    core = JsonRpcClient()
    id1 = core.queue("node.getInfo")
    [(ids1, frame1)] = core.flush(0.0)
    id2 = core.queue("payment.getChannelState", {"channelId": "0x01"})
    [(ids2, frame2)] = core.flush(0.0)
    assert id1 != id2 and core.pending == 2 and (ids1, ids2) == ([id1], [id2])
    assert orjson.loads(frame1) == {
        "jsonrpc": "2.0",
        "id": id1,
        "method": "node.getInfo",
        "params": {},
    }
    assert orjson.loads(frame2)["params"] == {"channelId": "0x01"}


def test_queued_requests_leave_as_batches_of_at_most_max_batch() -> None:
    core = JsonRpcClient(max_batch=3)
    ids = [core.queue("m", {"n": n}) for n in range(7)]
    core.forget(ids[1])  # given up before it left: not sent
    frames = core.flush(0.0)
    assert [f_ids for f_ids, _ in frames] == [[ids[0], ids[2], ids[3]], [ids[4], ids[5], ids[6]]]
    first = orjson.loads(frames[0][1])
    assert isinstance(first, list) and [m["params"]["n"] for m in first] == [0, 2, 3]
    assert all(m["jsonrpc"] == "2.0" and m["method"] == "m" for m in first)
    assert core.queued == 0 and core.pending == 6
    assert core.flush(0.0) == []


def test_the_queue_is_held_while_a_frame_is_unanswered_then_leaves_at_once() -> None:
    core = JsonRpcClient(window=1, patience=0.01)
    a = core.queue("a")
    assert core.may_send(0.0) and core.wake_at(0.0) is None
    core.flush(0.0)
    b, c = core.queue("b"), core.queue("c")
    assert not core.may_send(0.001)  # the node is busy with a
    assert core.wake_at(0.001) == pytest.approx(0.01)
    core.receive(orjson.dumps({"jsonrpc": "2.0", "id": a, "result": 1}))
    assert core.may_send(0.002)  # answered: b and c leave together, as a batch
    [(ids, frame)] = core.flush(0.002)
    assert ids == [b, c] and isinstance(orjson.loads(frame), list)
    d = core.queue("d")
    assert not core.may_send(0.005)
    # b and c are slow: after `patience` they no longer hold d back.
    assert core.may_send(0.0121)
    assert [ids for ids, _ in core.flush(0.0121)] == [[d]]
    core.queue("e")
    assert not core.may_send(0.0122)  # d is young and unanswered
    core.forget(b)
    core.forget(c)
    core.receive(orjson.dumps({"jsonrpc": "2.0", "id": d, "result": 1}))
    assert core.pending == 1 and core.may_send(0.013)


def test_a_wider_window_sends_that_many_frames_before_holding() -> None:
    core = JsonRpcClient(window=2, patience=1.0)
    send(core, "a")
    core.queue("b")
    assert core.may_send(0.0)
    core.flush(0.0)
    core.queue("c")
    assert not core.may_send(0.0)
    assert core.forget_all() and core.queued == 0 and not core.may_send(0.0)


def test_responses_match_by_id_in_any_order_and_batches() -> None:
    core = JsonRpcClient()
    a, b, c = (core.queue(m) for m in "abc")
    core.flush(0.0)
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
    a = send(core, "a")
    core.forget(a)
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "id": a, "result": 1})) == []
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "id": 999, "result": 1})) == []
    b = send(core, "b")
    frame = orjson.dumps({"jsonrpc": "2.0", "id": b, "result": 2})
    assert len(core.receive(frame)) == 1
    assert core.receive(frame) == []
    # A notification from the server is not a response.
    assert core.receive(orjson.dumps({"jsonrpc": "2.0", "method": "tick", "params": {}})) == []


def test_forget_all_returns_pending_ids() -> None:
    core = JsonRpcClient()
    ids = [send(core, "m") for _ in range(2)] + [core.queue("queued")]
    assert core.forget_all() == ids
    assert core.pending == 0 and core.queued == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        JsonRpcClient(max_batch=0)
    with pytest.raises(ValueError):
        JsonRpcClient(window=0)


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
    send(core, "m")
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
