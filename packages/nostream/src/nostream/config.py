"""Relay settings: ``settings.yaml`` in ``NOSTR_CONFIG_DIR`` merged with environment overrides.

A bad value raises :class:`ConfigError` whose message is one line naming the
setting or variable and what is wrong; the CLI prints it and exits with 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml


class ConfigError(ValueError):
    """An invalid setting; the message names it and says what is wrong."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` hits per ``period_ms`` for ``kinds`` (None = every kind)."""

    rate: int
    period_ms: int
    kinds: tuple[tuple[int, int], ...] | None = None
    description: str = ""

    def applies_to(self, kind: int) -> bool:
        return self.kinds is None or any(lo <= kind <= hi for lo, hi in self.kinds)


@dataclass(frozen=True, slots=True)
class InfoSettings:
    relay_url: str = "ws://localhost:8008"
    name: str = "nostream"
    description: str = "A paid Nostr relay."
    pubkey: str = ""
    contact: str = ""


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    max_payload_size: int = 131072
    remote_ip_header: str = ""
    heartbeat_interval: float = 30.0
    max_outgoing_queue: int = 1000


@dataclass(frozen=True, slots=True)
class EventLimits:
    min_pow_bits: int = 0
    pubkey_min_pow_bits: int = 0
    kind_whitelist: tuple[tuple[int, int], ...] = ()
    kind_blacklist: tuple[tuple[int, int], ...] = ()
    pubkey_whitelist: tuple[str, ...] = ()
    pubkey_blacklist: tuple[str, ...] = ()
    max_positive_delta: int = 900
    max_negative_delta: int = 0
    max_content_length: int = 102400
    rate_limits: tuple[RateLimit, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    max_subscriptions: int = 20
    max_filters: int = 10
    max_filter_values: int = 1000
    max_subscription_id_length: int = 64
    max_limit: int = 5000
    default_limit: int = 500


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """PostgreSQL connection (used when ``DB_HOST`` is set)."""

    host: str
    port: int = 5432
    user: str = "nostr_ts_relay"
    password: str = ""
    name: str = "nostr_ts_relay"

    @property
    def dsn(self) -> str:
        from urllib.parse import quote

        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.name, safe='')}"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Redis connection (used when ``REDIS_HOST`` is set)."""

    host: str
    port: int = 6379
    password: str = ""

    @property
    def url(self) -> str:
        from urllib.parse import quote

        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"


@dataclass(frozen=True, slots=True)
class DassieSettings:
    """The payment node link. Payments are required iff ``payments_enabled``."""

    rpc_url: str | None = None
    rpc_token: str = ""
    rpc_timeout_ms: int = 5000
    payments_enabled: bool = False
    btp_nips_enabled: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the relay reads at start."""

    host: str = "0.0.0.0"
    port: int = 8008
    secret: str = ""
    config_dir: Path = Path(".nostr")
    data_dir: Path = Path(".nostr")
    info: InfoSettings = field(default_factory=InfoSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    events: EventLimits = field(default_factory=EventLimits)
    subscriptions: SubscriptionLimits = field(default_factory=SubscriptionLimits)
    message_rate_limits: tuple[RateLimit, ...] = ()
    auth_required: bool = False
    database: DatabaseSettings | None = None
    redis: RedisSettings | None = None
    dassie: DassieSettings = field(default_factory=DassieSettings)
    payments_raw: Mapping[str, Any] = field(default_factory=dict)
    """The ``payments:`` section of settings.yaml, unparsed (nostream.payments reads it)."""

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "nostream.sqlite3"


def default_settings_text() -> str:
    return resources.files("nostream").joinpath("default_settings.yaml").read_text("utf-8")


# -- small typed readers ---------------------------------------------------------------


def _get(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping):
            raise ConfigError(f"settings.yaml: {path}: parent is not a mapping")
        node = node.get(part)
        if node is None:
            return None
    return node


def _int(tree: Mapping[str, Any], path: str, default: int, minimum: int = 0) -> int:
    value = _get(tree, path)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"settings.yaml: {path} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"settings.yaml: {path} must be at least {minimum}, got {value}")
    return value


def _str(tree: Mapping[str, Any], path: str, default: str) -> str:
    value = _get(tree, path)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"settings.yaml: {path} must be a string, got {value!r}")
    return value


def _bool(tree: Mapping[str, Any], path: str, default: bool) -> bool:
    value = _get(tree, path)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"settings.yaml: {path} must be true or false, got {value!r}")
    return value


def _kind_ranges(tree: Mapping[str, Any], path: str) -> tuple[tuple[int, int], ...]:
    return _kind_list(_get(tree, path), path)


def _kind_list(value: object, path: str) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"settings.yaml: {path} must be a list of kinds or [from, to] ranges")
    out: list[tuple[int, int]] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 65535:
            out.append((item, item))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(k, int) and not isinstance(k, bool) for k in item)
            and 0 <= item[0] <= item[1] <= 65535
        ):
            out.append((item[0], item[1]))
        else:
            raise ConfigError(f"settings.yaml: {path}: {item!r} is not a kind or [from, to] range")
    return tuple(out)


def _pubkeys(tree: Mapping[str, Any], path: str) -> tuple[str, ...]:
    value = _get(tree, path)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(v, str) and len(v) <= 64 and all(c in "0123456789abcdef" for c in v)
        for v in value
    ):
        raise ConfigError(f"settings.yaml: {path} must be a list of lowercase hex pubkeys")
    return tuple(value)


def _rate_limits(tree: Mapping[str, Any], path: str) -> tuple[RateLimit, ...]:
    value = _get(tree, path)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"settings.yaml: {path} must be a list")
    out: list[RateLimit] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"settings.yaml: {where} must be a mapping with rate and period")
        rate, period = item.get("rate"), item.get("period")
        for name, value in (("rate", rate), ("period", period)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"settings.yaml: {where}.{name} must be a positive integer, got {value!r}"
                )
        assert isinstance(rate, int) and isinstance(period, int)
        kinds = None
        if "kinds" in item:
            kinds = _kind_list(item["kinds"], f"{where}.kinds")
        out.append(RateLimit(rate, period, kinds, str(item.get("description", ""))))
    return tuple(out)


def _env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


# -- loading ---------------------------------------------------------------------------


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings.yaml (writing the default one when missing) and apply ``env``."""
    env = os.environ if env is None else env
    config_dir = Path(env.get("NOSTR_CONFIG_DIR") or Path.home() / ".nostr")
    data_dir = Path(env.get("NOSTR_DATA_DIR") or config_dir)
    path = config_dir / "settings.yaml"
    if not path.exists():
        try:
            default = default_settings_text()
        except OSError as exc:  # a broken install, not the operator's folder
            raise ConfigError(
                f"NOSTR_CONFIG_DIR: no {path} and the packaged default is missing: {exc.strerror}"
            ) from None
        try:
            config_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(default, "utf-8")
        except OSError as exc:
            raise ConfigError(f"NOSTR_CONFIG_DIR: cannot write {path}: {exc.strerror}") from None
    try:
        tree = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    return settings_from(tree, env, config_dir, data_dir)


def settings_from(
    tree: Mapping[str, Any],
    env: Mapping[str, str],
    config_dir: Path = Path(".nostr"),
    data_dir: Path = Path(".nostr"),
) -> Settings:
    """Build :class:`Settings` from a parsed settings tree and environment."""
    info = InfoSettings(
        relay_url=_str(tree, "info.relay_url", "ws://localhost:8008"),
        name=_str(tree, "info.name", "nostream"),
        description=_str(tree, "info.description", "A paid Nostr relay."),
        pubkey=_str(tree, "info.pubkey", ""),
        contact=_str(tree, "info.contact", ""),
    )
    network = NetworkSettings(
        max_payload_size=_int(tree, "network.maxPayloadSize", 131072, minimum=1024),
        remote_ip_header=_str(tree, "network.remoteIpHeader", "").lower(),
        heartbeat_interval=float(_int(tree, "network.heartbeatInterval", 30, minimum=1)),
        max_outgoing_queue=_int(tree, "network.maxOutgoingQueue", 1000, minimum=1),
    )
    e = "limits.event"
    events = EventLimits(
        min_pow_bits=_int(tree, f"{e}.eventId.minLeadingZeroBits", 0),
        pubkey_min_pow_bits=_int(tree, f"{e}.pubkey.minLeadingZeroBits", 0),
        kind_whitelist=_kind_ranges(tree, f"{e}.kind.whitelist"),
        kind_blacklist=_kind_ranges(tree, f"{e}.kind.blacklist"),
        pubkey_whitelist=_pubkeys(tree, f"{e}.pubkey.whitelist"),
        pubkey_blacklist=_pubkeys(tree, f"{e}.pubkey.blacklist"),
        max_positive_delta=_int(tree, f"{e}.createdAt.maxPositiveDelta", 900),
        max_negative_delta=_int(tree, f"{e}.createdAt.maxNegativeDelta", 0),
        max_content_length=_int(tree, f"{e}.content.maxLength", 102400, minimum=1),
        rate_limits=_rate_limits(tree, f"{e}.rateLimits"),
    )
    s = "limits.client.subscription"
    subs = SubscriptionLimits(
        max_subscriptions=_int(tree, f"{s}.maxSubscriptions", 20, minimum=1),
        max_filters=_int(tree, f"{s}.maxFilters", 10, minimum=1),
        max_filter_values=_int(tree, f"{s}.maxFilterValues", 1000, minimum=1),
        max_subscription_id_length=_int(tree, f"{s}.maxSubscriptionIdLength", 64, minimum=1),
        max_limit=_int(tree, f"{s}.maxLimit", 5000, minimum=1),
        default_limit=_int(tree, f"{s}.defaultLimit", 500, minimum=0),
    )
    payments_raw = _get(tree, "payments") or {}
    if not isinstance(payments_raw, Mapping):
        raise ConfigError("settings.yaml: payments must be a mapping")

    host = env.get("RELAY_HOST") or "0.0.0.0"
    port = _env_int(env, "RELAY_PORT", 8008, 0, 65535)

    database = None
    if env.get("DB_HOST"):
        database = DatabaseSettings(
            host=env["DB_HOST"],
            port=_env_int(env, "DB_PORT", 5432, 1, 65535),
            user=env.get("DB_USER") or "nostr_ts_relay",
            password=env.get("DB_PASSWORD") or "",
            name=env.get("DB_NAME") or "nostr_ts_relay",
        )
    redis = None
    if env.get("REDIS_HOST"):
        redis = RedisSettings(
            host=env["REDIS_HOST"],
            port=_env_int(env, "REDIS_PORT", 6379, 1, 65535),
            password=env.get("REDIS_PASSWORD") or "",
        )
    rpc_url = env.get("DASSIE_RPC_URL") or None
    if rpc_url is not None:
        parsed = urlparse(rpc_url)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise ConfigError(f"DASSIE_RPC_URL must be a ws:// or wss:// URL, got {rpc_url!r}")
    dassie = DassieSettings(
        rpc_url=rpc_url,
        rpc_token=env.get("DASSIE_RPC_TOKEN") or "",
        rpc_timeout_ms=_env_int(env, "DASSIE_RPC_TIMEOUT_MS", 5000, 1, 600_000),
        payments_enabled=rpc_url is not None and _env_bool(env, "PAYMENTS_ENABLED", True),
        btp_nips_enabled=_env_bool(env, "BTP_NIPS_ENABLED", False),
    )
    return Settings(
        host=host,
        port=port,
        secret=env.get("SECRET") or "",
        config_dir=config_dir,
        data_dir=data_dir,
        info=info,
        network=network,
        events=events,
        subscriptions=subs,
        message_rate_limits=_rate_limits(tree, "limits.message.rateLimits"),
        auth_required=_bool(tree, "nip42.authRequired", False),
        database=database,
        redis=redis,
        dassie=dassie,
        payments_raw=dict(payments_raw),
    )
