"""Where an event that passed validation is priced and paid before it is stored.

:func:`build_gate` picks the gate from the configuration: payments are required
exactly when ``DASSIE_RPC_URL`` is set, unless ``PAYMENTS_ENABLED=false``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .gate import Charge, FreePublishing, PaymentGate
from .paid import CounterStore, NodePaidPublishing
from .pricing import Pricing, PricingError, load_pricing
from .rpc_client import DassieRpcClient

__all__ = [
    "Charge",
    "FreePublishing",
    "NodePaidPublishing",
    "PaymentConfigError",
    "PaymentGate",
    "Pricing",
    "build_gate",
    "load_pricing",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class PaymentConfigError(ValueError):
    """Payment configuration is invalid; the message names the variable."""


def _payments_section(settings: Any) -> Mapping[str, Any]:
    """The raw ``payments:`` mapping of settings.yaml, from a mapping or a settings object."""
    if settings is None:
        return {}
    section = (
        settings.get("payments")
        if isinstance(settings, Mapping)
        else getattr(settings, "payments", None)
    )
    if section is None:
        section = getattr(settings, "payments_raw", None)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise PaymentConfigError("settings.yaml payments: must be a mapping")
    return section


def _from_env(env: Mapping[str, str]) -> tuple[str | None, str, int]:
    """(url or None when payments are off, token, timeout ms) from the environment."""
    url = (env.get("DASSIE_RPC_URL") or "").strip()
    enabled_text = env.get("PAYMENTS_ENABLED")
    if enabled_text is not None and enabled_text.strip() != "":
        flag = enabled_text.strip().lower()
        if flag not in _TRUE | _FALSE:
            raise PaymentConfigError(
                f"PAYMENTS_ENABLED: expected true or false, got {enabled_text!r}"
            )
        enabled = flag in _TRUE
    else:
        enabled = True
    if not url or not enabled:
        return None, "", 0
    if not url.startswith(("ws://", "wss://")):
        raise PaymentConfigError(f"DASSIE_RPC_URL: expected a ws:// or wss:// URL, got {url!r}")
    timeout_text = env.get("DASSIE_RPC_TIMEOUT_MS", "5000").strip() or "5000"
    if not timeout_text.isdigit() or int(timeout_text) <= 0:
        raise PaymentConfigError(
            f"DASSIE_RPC_TIMEOUT_MS: expected a positive integer, got {timeout_text!r}"
        )
    return url, env.get("DASSIE_RPC_TOKEN") or "", int(timeout_text)


def build_gate(
    settings: Any, store: CounterStore | None, env: Mapping[str, str] | None = None
) -> PaymentGate:
    """The relay's payment gate for this configuration (raises PaymentConfigError)."""
    env = os.environ if env is None else env
    section = _payments_section(settings)
    dassie = getattr(settings, "dassie", None)
    if dassie is not None:
        # The relay's parsed settings (nostream.config.Settings) already checked these.
        if not dassie.payments_enabled or not dassie.rpc_url:
            return FreePublishing()
        url, token, timeout_ms = dassie.rpc_url, dassie.rpc_token, int(dassie.rpc_timeout_ms)
    else:
        url, token, timeout_ms = _from_env(env)
        if url is None:
            return FreePublishing()
    try:
        pricing = load_pricing(section, env)
    except PricingError as exc:
        raise PaymentConfigError(str(exc)) from None

    gate: NodePaidPublishing

    async def on_connect(_: DassieRpcClient) -> None:
        await gate.refresh_node_info()

    rpc = DassieRpcClient(url, token or None, timeout=timeout_ms / 1000, on_connect=on_connect)
    gate = NodePaidPublishing(rpc, pricing, store)
    return gate
