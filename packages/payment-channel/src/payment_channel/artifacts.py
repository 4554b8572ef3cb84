"""Typed access to the compiled contract artifacts.

The JSON files in ``artifacts/`` are produced by ``scripts/compile.mjs`` (pinned
solc-js, fixed settings) and committed, so Python code never needs a compiler.

    from payment_channel.artifacts import CHANNEL_FACTORY
    factory = w3.eth.contract(abi=CHANNEL_FACTORY.abi, bytecode=CHANNEL_FACTORY.bytecode)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).with_name("artifacts")


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its ABI and creation/runtime bytecode (0x-prefixed hex)."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    compiler_settings: dict[str, Any]

    def function_abi(self, name: str) -> dict[str, Any]:
        """The ABI entry of the function or event called ``name`` (KeyError if absent)."""
        for entry in self.abi:
            if entry.get("name") == name:
                return entry
        raise KeyError(f"{self.contract_name} has no ABI entry {name!r}")


@cache
def load_artifact(name: str) -> Artifact:
    """Load ``artifacts/<name>.json`` (e.g. ``"ChannelFactory"``, ``"TestToken"``)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not name.isidentifier() or not path.is_file():
        raise LookupError(f"no compiled artifact named {name!r} in {ARTIFACTS_DIR}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Artifact(
        contract_name=str(raw["contractName"]),
        abi=list(raw["abi"]),
        bytecode=str(raw["bytecode"]),
        deployed_bytecode=str(raw["deployedBytecode"]),
        compiler_version=str(raw["compiler"]["version"]),
        compiler_settings=dict(raw["compiler"]["settings"]),
    )


def __getattr__(attribute: str) -> Artifact:
    # CHANNEL_FACTORY and TEST_TOKEN load on first use, not at import.
    if attribute == "CHANNEL_FACTORY":
        return load_artifact("ChannelFactory")
    if attribute == "TEST_TOKEN":
        return load_artifact("TestToken")
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
