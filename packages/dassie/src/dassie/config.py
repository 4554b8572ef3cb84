"""The node's configuration, read once from the environment and validated.

Every problem raises :class:`ConfigError` with one line naming the variable and
what is wrong; ``dassie serve`` prints it and exits with status 2, so the node
never starts half-configured.

Per EVM chain ``NAME`` (``BASE``, ``CRONOS``, ``LOCAL`` or any other name found in
the environment): ``SETTLEMENT_<NAME>_ENABLED``, ``_RPC_URL``, ``_FACTORY_ADDRESS``,
``_RELAY_PRIVATE_KEY`` and optionally ``_CHAIN_ID``, ``_SETTLE_THRESHOLD`` (the
unsettled amount, in base units, that makes the node close a channel) and
``_ASSETS`` (``ETH`` for the native coin, ``SYMBOL=0xTokenAddress`` for tokens,
comma separated; the first bare symbol names the native coin) and ``_TX_TIMEOUT``
(seconds a settlement transaction may stay unmined before it is replaced with a
higher fee, default 300).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from payment_channel.claim import SECP256K1_N, address_of
from payment_channel.keccak import to_checksum_address

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MIN_TOKEN_LENGTH = 32


class ConfigError(ValueError):
    """One line: the variable and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ChainPreset:
    chain_id: int
    rpc_url: str | None
    factory: str | None
    native: str


PRESETS: dict[str, ChainPreset] = {
    "BASE": ChainPreset(8453, "https://mainnet.base.org", None, "ETH"),
    "CRONOS": ChainPreset(25, "https://evm.cronos.org", None, "CRO"),
    "LOCAL": ChainPreset(
        31337, "http://127.0.0.1:8545", "0x5FbDB2315678afecb367f032d93F642f64180aa3", "ETH"
    ),
}

_CHAIN_KEYS = (
    "ENABLED",
    "RPC_URL",
    "FACTORY_ADDRESS",
    "RELAY_PRIVATE_KEY",
    "CHAIN_ID",
    "SETTLE_THRESHOLD",
    "ASSETS",
    "TX_TIMEOUT",
)
_CHAIN_VAR = re.compile(r"SETTLEMENT_([A-Z0-9_]+?)_(" + "|".join(_CHAIN_KEYS) + r")\Z")
_HEX_KEY = re.compile(r"(?:0x)?[0-9a-fA-F]{64}\Z")
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}\Z")


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """One enabled EVM chain the node accepts claims on and settles to."""

    name: str
    chain_id: int
    rpc_url: str
    factory_address: str
    relay_private_key: bytes = field(repr=False)
    relay_address: str
    settle_threshold: int | None
    assets: dict[str, str]
    """Currency code -> token address (``ZERO_ADDRESS`` for the native coin)."""
    tx_timeout: int = 300
    """Seconds a settlement transaction may wait unmined before it is sent again with a
    higher fee (or afresh, if the chain forgot it)."""

    def currency_of(self, token: str) -> str | None:
        """The currency code of a channel's token on this chain, or None if not priced."""
        for code, address in self.assets.items():
            if address.lower() == token.lower():
                return code
        return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_verify_workers() -> int:
    """``CLAIM_VERIFY_WORKERS`` when unset: 1 recovery process with a second CPU, else 0."""
    return 1 if available_cpus() >= 2 else 0


MAX_VERIFY_WORKERS = 64


@dataclass(frozen=True, slots=True)
class Config:
    node_env: str
    rpc_auth_token: str = field(repr=False)
    ledger_db_path: Path
    host: str
    port: int
    expiry_margin: int
    ilp_address: str
    chains: tuple[ChainConfig, ...]
    poll_interval: float = 15.0
    verify_workers: int = field(default_factory=default_verify_workers)
    """Processes that recover claim signers (0: on the event loop)."""


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _int(name: str, value: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{name}: must be {bounds}, got {number}")
    return number


def _address(name: str, value: str) -> str:
    value = value.strip()
    if not _HEX_ADDRESS.match(value):
        raise ConfigError(f"{name}: not an address (0x + 40 hex digits): {value!r}")
    checksummed = to_checksum_address(value)
    body = value[2:]
    if body != body.lower() and body != body.upper() and value != checksummed:
        raise ConfigError(f"{name}: bad EIP-55 checksum (expected {checksummed})")
    return checksummed


def _private_key(name: str, value: str) -> bytes:
    value = value.strip()
    if not _HEX_KEY.match(value):
        raise ConfigError(f"{name}: not a private key (64 hex digits, optional 0x)")
    key = bytes.fromhex(value.removeprefix("0x"))
    if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise ConfigError(f"{name}: private key out of the secp256k1 range")
    return key


def _url(name: str, value: str) -> str:
    value = value.strip()
    if not re.match(r"https?://[^\s/]+", value):
        raise ConfigError(f"{name}: expected an http(s) URL, got {value!r}")
    return value


def _assets(name: str, value: str) -> dict[str, str]:
    assets: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        code, _, token = item.partition("=")
        code = code.strip()
        if not _SYMBOL.match(code):
            raise ConfigError(f"{name}: bad currency code {code!r}")
        assets[code] = _address(name, token) if token else ZERO_ADDRESS
    if not assets:
        raise ConfigError(f"{name}: lists no currency")
    return assets


def _ledger_path(name: str, value: str) -> Path:
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{name}: {value} is a directory, not a database file")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot create directory {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: directory {parent} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"{name}: {value} is not readable and writable")
    return path


def _chain(name: str, env: Mapping[str, str]) -> ChainConfig:
    prefix = f"SETTLEMENT_{name}_"
    preset = PRESETS.get(name)

    def get(key: str) -> str | None:
        value = env.get(prefix + key)
        return value if value is not None and value.strip() != "" else None

    chain_id_text = get("CHAIN_ID")
    if chain_id_text is not None:
        chain_id = _int(prefix + "CHAIN_ID", chain_id_text, 1)
    elif preset is not None:
        chain_id = preset.chain_id
    else:
        raise ConfigError(f"{prefix}CHAIN_ID: required for a chain without a preset")
    rpc_text = get("RPC_URL") or (preset.rpc_url if preset else None)
    if rpc_text is None:
        raise ConfigError(f"{prefix}RPC_URL: required for an enabled chain")
    factory_text = get("FACTORY_ADDRESS") or (preset.factory if preset else None)
    if factory_text is None:
        raise ConfigError(f"{prefix}FACTORY_ADDRESS: required for an enabled chain")
    key_text = get("RELAY_PRIVATE_KEY")
    if key_text is None:
        raise ConfigError(f"{prefix}RELAY_PRIVATE_KEY: required for an enabled chain")
    key = _private_key(prefix + "RELAY_PRIVATE_KEY", key_text)
    threshold_text = get("SETTLE_THRESHOLD")
    assets_text = get("ASSETS") or (preset.native if preset else "ETH")
    return ChainConfig(
        name=name,
        chain_id=chain_id,
        rpc_url=_url(prefix + "RPC_URL", rpc_text),
        factory_address=_address(prefix + "FACTORY_ADDRESS", factory_text),
        relay_private_key=key,
        relay_address=address_of(key),
        settle_threshold=(
            None if threshold_text is None else _int(prefix + "SETTLE_THRESHOLD", threshold_text, 1)
        ),
        assets=_assets(prefix + "ASSETS", assets_text),
        tx_timeout=_int(prefix + "TX_TIMEOUT", get("TX_TIMEOUT") or "300", 1, 86_400),
    )


def chain_names(env: Mapping[str, str]) -> list[str]:
    """Chain names mentioned in the environment, presets first."""
    names = list(PRESETS)
    for var in sorted(env):
        match = _CHAIN_VAR.match(var)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; raises ConfigError on the first problem."""
    env = os.environ if env is None else env
    token = env.get("RPC_AUTH_TOKEN", "")
    if not token:
        raise ConfigError("RPC_AUTH_TOKEN: required (at least 32 characters)")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"RPC_AUTH_TOKEN: too short ({len(token)} characters, need {MIN_TOKEN_LENGTH})"
        )
    if token != token.strip() or any(ord(c) < 33 or ord(c) > 126 for c in token):
        raise ConfigError("RPC_AUTH_TOKEN: must be printable ASCII without spaces")
    node_env = env.get("NODE_ENV", "production").strip() or "production"
    chains: list[ChainConfig] = []
    for name in chain_names(env):
        enabled_var = f"SETTLEMENT_{name}_ENABLED"
        if _flag(enabled_var, env.get(enabled_var, "")):
            chains.append(_chain(name, env))
    ids = [c.chain_id for c in chains]
    for chain in chains:
        if ids.count(chain.chain_id) > 1:
            raise ConfigError(
                f"SETTLEMENT_{chain.name}_CHAIN_ID: chain id {chain.chain_id} is used twice"
            )
    ilp_default = "g.dassie" if node_env == "production" else "test.dassie"
    ilp_address = env.get("DASSIE_ILP_ADDRESS", "").strip() or ilp_default
    if not re.match(
        r"(g|private|example|test|test1|test2|test3|local|peer|self)(\.[\w~-]+)+\Z", ilp_address
    ):
        raise ConfigError(f"DASSIE_ILP_ADDRESS: not an ILP address: {ilp_address!r}")
    return Config(
        node_env=node_env,
        rpc_auth_token=token,
        ledger_db_path=_ledger_path(
            "LEDGER_DB_PATH", env.get("LEDGER_DB_PATH", "").strip() or "./data/ledger.db"
        ),
        host=env.get("DASSIE_HOST", "").strip() or "0.0.0.0",
        port=_int("DASSIE_PORT", env.get("DASSIE_PORT", "7768") or "7768", 0, 65535),
        expiry_margin=_int(
            "SETTLEMENT_EXPIRY_MARGIN", env.get("SETTLEMENT_EXPIRY_MARGIN", "3600") or "3600", 0
        ),
        ilp_address=ilp_address,
        chains=tuple(chains),
        poll_interval=float(
            _int("SETTLEMENT_POLL_INTERVAL", env.get("SETTLEMENT_POLL_INTERVAL", "15") or "15", 1)
        ),
        verify_workers=_verify_workers(env.get("CLAIM_VERIFY_WORKERS", "")),
    )


def _verify_workers(value: str) -> int:
    if not value.strip():
        return default_verify_workers()
    return _int("CLAIM_VERIFY_WORKERS", value, 0, MAX_VERIFY_WORKERS)
