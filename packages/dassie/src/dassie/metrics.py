"""``GET /metrics``: the node in Prometheus' text format, read from its state at scrape time.

What an operator watches: ledger balances by kind of account and asset, claims accepted
and what they credited per currency, settlements by status, and each chain's
reachability. Only aggregates: no channel id, pubkey or peer name appears, so
the number of series stays small and nothing identifies a user.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .claims.channels import ChannelState
    from .ledger import ClaimRecord
    from .node import Node

_ID_SEGMENT = re.compile(r"(0x)?[0-9a-fA-F]{40,}\Z")


def account_kind(path: str) -> str:
    """The path without a final channel-id or pubkey segment (``assets/channel/LOCAL``)."""
    head, _, last = path.rpartition("/")
    return head if head and _ID_SEGMENT.match(last) else path


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    """One metric family: HELP and TYPE lines, then a line per labelled sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        number = repr(float(value)) if isinstance(value, float) else str(value)
        lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return lines


class NodeMetrics:
    """Counts accepted claims (a callback on the claim service); renders everything else live."""

    def __init__(self) -> None:
        self.claims_accepted: Counter[str] = Counter()
        self.credited: Counter[str] = Counter()

    def on_accepted(self, channel: ChannelState, record: ClaimRecord) -> None:
        currency = channel.currency or "unknown"
        self.claims_accepted[currency] += 1
        self.credited[currency] += record.delta

    def render(self, node: Node) -> str:
        balances: Counter[tuple[str, str]] = Counter()
        accounts: Counter[tuple[str, str]] = Counter()
        for path, account in node.store.ledger.accounts.items():
            key = (account_kind(path), account.asset)
            balances[key] += account.balance
            accounts[key] += 1
        settlements = Counter(r.status for r in node.store.settlements.values())
        now = time.time()
        chains: list[tuple[dict[str, str], float]] = []
        chain_age: list[tuple[dict[str, str], float]] = []
        for source in node.sources:
            health = getattr(source, "health", None)
            status: dict[str, Any] = health() if callable(health) else {"status": "ok"}
            chains.append(({"chain": source.name}, 0 if status["status"] == "unreachable" else 1))
            last_ok = status.get("lastOkAt")
            if last_ok is not None:
                chain_age.append(({"chain": source.name}, round(now - float(last_ok), 3)))
        lines = [
            *family(
                "dassie_ledger_balance",
                "gauge",
                "Sum of posted balances (the asset's base units) by kind of account and asset.",
                [({"account": k, "asset": a}, v) for (k, a), v in sorted(balances.items())],
            ),
            *family(
                "dassie_ledger_accounts",
                "gauge",
                "Ledger accounts by kind and asset.",
                [({"account": k, "asset": a}, v) for (k, a), v in sorted(accounts.items())],
            ),
            *family(
                "dassie_claims_accepted_total",
                "counter",
                "Claims accepted since start, by currency.",
                [({"currency": k}, v) for k, v in sorted(self.claims_accepted.items())],
            ),
            *family(
                "dassie_claims_credited_total",
                "counter",
                "Base units credited by accepted claims since start, by currency.",
                [({"currency": k}, v) for k, v in sorted(self.credited.items())],
            ),
            *family(
                "dassie_channels_paying",
                "gauge",
                "Channels with at least one accepted claim.",
                [({}, len(node.store.best_claims))],
            ),
            *family(
                "dassie_settlements",
                "gauge",
                "Settlement transactions by status (pending, mined, failed, replaced).",
                [({"status": k}, v) for k, v in sorted(settlements.items())],
            ),
            *family(
                "dassie_chain_up",
                "gauge",
                "1 when the chain's endpoint answered its last call, else 0.",
                chains,
            ),
            *family(
                "dassie_chain_last_ok_age_seconds",
                "gauge",
                "Seconds since the chain's endpoint last answered.",
                chain_age,
            ),
        ]
        return "\n".join(lines) + "\n"
