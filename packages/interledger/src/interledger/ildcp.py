"""Interledger Dynamic Configuration Protocol (RFC 31)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from interledger.address import validate_address
from interledger.condition import condition_of
from interledger.errors import DecodeError, EncodeError
from interledger.oer import Reader, encode_var_octets
from interledger.packet import Fulfill, Prepare

ILDCP_DESTINATION = "peer.config"
PEER_PROTOCOL_FULFILLMENT = bytes(32)
PEER_PROTOCOL_CONDITION = condition_of(PEER_PROTOCOL_FULFILLMENT)


@dataclass(frozen=True, slots=True)
class IldcpResponse:
    client_address: str
    asset_scale: int
    asset_code: str


def request(now: datetime, timeout: timedelta = timedelta(seconds=60)) -> Prepare:
    """The Prepare a child sends to learn its address and asset."""
    return Prepare(0, now + timeout, PEER_PROTOCOL_CONDITION, ILDCP_DESTINATION, b"")


def is_request(prepare: Prepare) -> bool:
    return prepare.destination == ILDCP_DESTINATION


def encode_response(response: IldcpResponse) -> bytes:
    if not 0 <= response.asset_scale <= 255:
        raise EncodeError("asset scale must be 0..255")
    try:
        validate_address(response.client_address)
    except DecodeError as exc:
        raise EncodeError(str(exc)) from None
    return (
        encode_var_octets(response.client_address.encode())
        + bytes((response.asset_scale,))
        + encode_var_octets(response.asset_code.encode())
    )


def decode_response(data: bytes) -> IldcpResponse:
    r = Reader(data)
    address = validate_address(r.read_var_ascii())
    scale = r.read_uint8()
    code = r.read_var_utf8()
    r.expect_end()
    return IldcpResponse(address, scale, code)


def fulfill(response: IldcpResponse) -> Fulfill:
    """The Fulfill that answers an IL-DCP request."""
    return Fulfill(PEER_PROTOCOL_FULFILLMENT, encode_response(response))
