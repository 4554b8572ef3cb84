"""Interledger settings of the node, read from the environment.

- ``DASSIE_ILP_ADDRESS``: the node's ILP address (read by :mod:`dassie.config`).
- ``ILP_ASSET_CODE`` (default ``ETH``) and ``ILP_ASSET_SCALE`` (default ``18``): the
  asset of every ILP link and of prepaid balances.
- ``ILP_PEERS``: a JSON array of peers, each
  ``{"name", "token", "url"?, "routes"?, "maxPacketAmount"?, "creditLimit"?}``:
  ``token`` authenticates the link both ways (BTP auth, ``Authorization: Bearer``
  on ``/ilp``); with ``url`` (``ws(s)://.../btp`` or ``http(s)://.../ilp``) this
  node dials the peer, without it the peer dials in; ``routes`` are the address
  prefixes reached through the peer; ``creditLimit`` is the most the peer may owe
  in unsettled packets (T04 beyond it).
- ``ILP_STREAM_SECRET``: 64 hex digits, the STREAM server secret (default: derived
  from ``RPC_AUTH_TOKEN``, stable across restarts).
- ``ILP_MAX_HOLD_MS`` (default 30000) and ``ILP_MIN_EXPIRY_WINDOW_MS`` (default 1000).

Problems raise :class:`~dassie.config.ConfigError` with one line naming the variable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from interledger.address import is_valid_address, is_valid_segment

from ..config import ConfigError

_HEX32 = re.compile(r"[0-9a-fA-F]{64}\Z")


@dataclass(frozen=True, slots=True)
class PeerConfig:
    name: str
    token: str = field(repr=False)
    url: str | None = None
    routes: tuple[str, ...] = ()
    max_packet_amount: int | None = None
    credit_limit: int | None = None


@dataclass(frozen=True, slots=True)
class IlpConfig:
    address: str
    asset_code: str
    asset_scale: int
    peers: tuple[PeerConfig, ...]
    stream_secret: bytes = field(repr=False)
    max_hold: timedelta = timedelta(seconds=30)
    min_expiry_window: timedelta = timedelta(seconds=1)


def _int(name: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    try:
        number = int(value) if isinstance(value, int) else int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ConfigError(f"{name}: out of range, got {number}")
    return number


def _peer(index: int, item: object) -> PeerConfig:
    where = f"ILP_PEERS[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(item) - {"name", "token", "url", "routes", "maxPacketAmount", "creditLimit"}
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    name = item.get("name")
    if not isinstance(name, str) or not is_valid_segment(name):
        raise ConfigError(f"{where}.name: expected letters, digits, '_', '~' or '-'")
    where = f"ILP_PEERS[{name}]"
    token = item.get("token")
    if not isinstance(token, str) or len(token) < 16:
        raise ConfigError(f"{where}.token: expected a string of at least 16 characters")
    url = item.get("url")
    if url is not None and (
        not isinstance(url, str) or not re.match(r"(wss?|https?)://[^\s/]+", url)
    ):
        raise ConfigError(f"{where}.url: expected a ws(s):// or http(s):// URL, got {url!r}")
    routes = item.get("routes", [])
    if not isinstance(routes, list) or not all(
        isinstance(r, str) and is_valid_address(r) for r in routes
    ):
        raise ConfigError(f"{where}.routes: expected a list of ILP address prefixes")
    max_packet = item.get("maxPacketAmount")
    limit = item.get("creditLimit")
    return PeerConfig(
        name,
        token,
        url,
        tuple(routes),
        None if max_packet is None else _int(f"{where}.maxPacketAmount", max_packet, 1),
        None if limit is None else _int(f"{where}.creditLimit", limit, 0),
    )


def load_ilp_config(env: Mapping[str, str], address: str, rpc_token: str) -> IlpConfig:
    """Parse the ILP variables; raises ConfigError (one line) on the first problem."""
    code = env.get("ILP_ASSET_CODE", "").strip() or "ETH"
    if not re.match(r"[A-Za-z0-9]{1,16}\Z", code):
        raise ConfigError(f"ILP_ASSET_CODE: expected 1-16 letters or digits, got {code!r}")
    scale = _int("ILP_ASSET_SCALE", env.get("ILP_ASSET_SCALE", "").strip() or "18", 0, 255)
    raw = env.get("ILP_PEERS", "").strip() or "[]"
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"ILP_PEERS: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise ConfigError("ILP_PEERS: expected a JSON array of peer objects")
    peers = tuple(_peer(i, item) for i, item in enumerate(items))
    names = [p.name for p in peers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"ILP_PEERS: peer name {name!r} is used twice")
    tokens = [p.token for p in peers]
    if len(set(tokens)) != len(tokens):
        raise ConfigError("ILP_PEERS: two peers share a token")
    secret_text = env.get("ILP_STREAM_SECRET", "").strip()
    if secret_text:
        if not _HEX32.match(secret_text):
            raise ConfigError("ILP_STREAM_SECRET: expected 64 hex digits")
        secret = bytes.fromhex(secret_text)
    else:
        secret = hmac.new(rpc_token.encode(), b"dassie ilp stream secret", hashlib.sha256).digest()
    hold = _int("ILP_MAX_HOLD_MS", env.get("ILP_MAX_HOLD_MS", "").strip() or "30000", 1)
    window = _int(
        "ILP_MIN_EXPIRY_WINDOW_MS", env.get("ILP_MIN_EXPIRY_WINDOW_MS", "").strip() or "1000", 0
    )
    return IlpConfig(
        address,
        code,
        scale,
        peers,
        secret,
        timedelta(milliseconds=hold),
        timedelta(milliseconds=window),
    )
