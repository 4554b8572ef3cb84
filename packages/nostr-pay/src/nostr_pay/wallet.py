"""The user's keys: a Nostr key and an EVM key, kept in ``<home>/keys.json`` (mode 0600)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nostr_protocol.keys import generate_secret_key, public_key_hex
from payment_channel.claim import address_of

DEFAULT_HOME = Path.home() / ".nostr-pay"


class WalletError(Exception):
    """The key file is unreadable or holds something that is not a key."""


@dataclass(frozen=True, slots=True)
class Wallet:
    nostr_secret: bytes
    evm_key: bytes

    @property
    def nostr_pubkey(self) -> str:
        return public_key_hex(self.nostr_secret)

    @property
    def evm_address(self) -> str:
        return address_of(self.evm_key)


def _key(text: object, name: str, path: Path) -> bytes:
    if not isinstance(text, str):
        raise WalletError(f"{path}: {name} is missing")
    raw = text[2:] if text.startswith("0x") else text
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise WalletError(f"{path}: {name} is not hex") from None
    if len(key) != 32:
        raise WalletError(f"{path}: {name} is not 32 bytes")
    return key


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create(home: Path, evm_key_override: bytes | None = None) -> Wallet:
    """Load ``home/keys.json``, creating fresh keys on first use.

    ``evm_key_override`` (e.g. a funded dev-chain account) replaces the stored EVM key
    for this run without touching the file.
    """
    path = home / "keys.json"
    if path.exists():
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise WalletError(f"{path}: cannot read keys: {exc}") from None
        if not isinstance(data, dict):
            raise WalletError(f"{path}: not a JSON object")
        wallet = Wallet(
            _key(data.get("nostr_secret"), "nostr_secret", path),
            _key(data.get("evm_private_key"), "evm_private_key", path),
        )
    else:
        wallet = Wallet(generate_secret_key(), generate_secret_key())
        body = {
            "nostr_secret": wallet.nostr_secret.hex(),
            "evm_private_key": "0x" + wallet.evm_key.hex(),
        }
        write_private(path, json.dumps(body, indent=2).encode())
    if evm_key_override is not None:
        wallet = Wallet(wallet.nostr_secret, evm_key_override)
    return wallet
