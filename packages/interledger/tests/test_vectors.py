"""Every shared vector decodes to its fields and re-encodes to its exact bytes."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from interledger import btp, packet
from interledger.stream import frames as f
from interledger.stream.packet import decode_stream_packet, encode_stream_packet


def _vectors_dir() -> Path:
    """``../shared/ilp-vectors`` from the repository root (the folder with ``.ci/``)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / ".ci").is_dir():
            return parent.parent / "shared" / "ilp-vectors"
    raise RuntimeError("repository root (the folder with .ci/) not found")


def load(name: str) -> Any:
    return json.loads((_vectors_dir() / name).read_text())


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def test_prepare_vector() -> None:
    vec = load("ilp-packet/prepare.json")
    raw = bytes.fromhex(vec["binary"])
    p = packet.decode_packet(raw)
    assert isinstance(p, packet.Prepare)
    j = vec["json"]
    assert p.amount == int(j["amount"])
    assert p.execution_condition == b64(j["executionCondition"])
    assert p.expires_at == datetime.fromisoformat(j["expiresAt"].replace("Z", "+00:00"))
    assert p.expires_at.tzinfo is UTC
    assert p.destination == j["destination"]
    assert p.data == b64(j["data"])
    assert packet.encode_packet(p) == raw


def test_fulfill_vector() -> None:
    vec = load("ilp-packet/fulfill.json")
    raw = bytes.fromhex(vec["binary"])
    p = packet.decode_packet(raw)
    assert p == packet.Fulfill(b64(vec["json"]["fulfillment"]), b64(vec["json"]["data"]))
    assert packet.encode_packet(p) == raw


def test_reject_vector() -> None:
    vec = load("ilp-packet/reject.json")
    raw = bytes.fromhex(vec["binary"])
    p = packet.decode_packet(raw)
    j = vec["json"]
    assert p == packet.Reject(j["code"], j["triggeredBy"], j["message"], b64(j["data"]))
    assert p.code == packet.ErrorCode.F01_INVALID_PACKET
    assert packet.encode_packet(p) == raw


@pytest.mark.parametrize("vec", load("btp/packets.json"), ids=lambda v: v["name"])
def test_btp_vectors(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    p = btp.decode_btp(raw)
    assert p.request_id == vec["requestId"]
    assert p.protocol_data == tuple(
        btp.ProtocolData(e["protocolName"], e["contentType"], bytes.fromhex(e["dataHex"]))
        for e in vec["protocolData"]
    )
    assert {
        1: btp.BtpResponse,
        2: btp.BtpError,
        6: btp.BtpMessage,
        7: btp.BtpTransfer,
    }[vec["type"]] is type(p)
    if isinstance(p, btp.BtpTransfer):
        assert p.amount == int(vec["amount"])
    if isinstance(p, btp.BtpError):
        assert (p.code, p.name, p.triggered_at) == (
            vec["code"],
            vec["errorName"],
            vec["triggeredAt"],
        )
        assert p.data == bytes.fromhex(vec["dataHex"])
        assert packet.parse_generalized_time(p.triggered_at) == datetime(
            2017, 8, 28, 18, 32, tzinfo=UTC
        )
    assert btp.encode_btp(p) == raw


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _frame_from_json(j: dict[str, Any]) -> f.Frame:
    cls = getattr(f, j["name"])
    kwargs: dict[str, Any] = {}
    for key, value in j.items():
        if key in ("type", "name"):
            continue
        field = _snake(key)
        if key in ("data", "receipt"):
            kwargs[field] = b64(value)
        elif key in ("errorMessage", "sourceAccount", "sourceAssetCode"):
            kwargs[field] = value
        else:
            kwargs[field] = int(value)
    frame: f.Frame = cls(**kwargs)
    return frame


STREAM = load("stream/StreamPacketFixtures.json")


def test_stream_fixture_count() -> None:
    assert len(STREAM) == 53


@pytest.mark.parametrize("vec", STREAM, ids=lambda v: v["name"])
def test_stream_vectors(vec: dict[str, Any]) -> None:
    raw = b64(vec["buffer"])
    p = decode_stream_packet(raw)
    j = vec["packet"]
    assert p.sequence == int(j["sequence"])
    assert p.packet_type == j["packetType"]
    assert p.prepare_amount == int(j["amount"])
    assert p.frames == tuple(_frame_from_json(fr) for fr in j["frames"])
    for fr, fj in zip(p.frames, j["frames"], strict=True):
        assert f.encode_frame(fr)[0] == fj["type"]
    if not vec.get("decode_only"):
        assert encode_stream_packet(p) == raw
