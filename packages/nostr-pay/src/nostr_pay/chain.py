"""Opening and reading payment channels on an EVM chain (web3, synchronous)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3

from payment_channel.artifacts import load_artifact

NATIVE_TOKEN = "0x0000000000000000000000000000000000000000"


class ChainError(Exception):
    """The chain refused or could not be reached."""


@dataclass(frozen=True, slots=True)
class OnChainChannel:
    sender: str
    recipient: str
    token: str
    balance: int
    highest_nonce: int
    expiration: int
    is_closed: bool


class Chain:
    """A JSON-RPC endpoint and the channel factory on it."""

    def __init__(self, rpc_url: str, factory: str | None = None) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        self.rpc_url = rpc_url
        self.factory_address = factory

    @property
    def chain_id(self) -> int:
        try:
            return int(self.w3.eth.chain_id)
        except Exception as exc:
            raise ChainError(f"cannot reach the chain at {self.rpc_url}: {exc}") from None

    def factory(self, address: str | None = None) -> Any:
        target = address or self.factory_address
        if not target:
            raise ChainError("no channel factory address")
        abi = load_artifact("ChannelFactory").abi
        return self.w3.eth.contract(address=Web3.to_checksum_address(target), abi=abi)

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def _send(self, key: bytes, call: Any, value: int) -> Any:
        account = Account.from_key(key)
        tx: dict[str, Any] = {
            "from": account.address,
            "value": value,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": self.chain_id,
            "gas": 300_000,
            "gasPrice": int(self.w3.eth.gas_price),
        }
        built = call.build_transaction(tx)
        signed = account.sign_transaction(built)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def open_channel(self, key: bytes, recipient: str, deposit: int, expiration: int) -> str:
        """Open a native-coin channel to ``recipient``; returns its id (0x + 64 hex)."""
        factory = self.factory()
        call = factory.functions.openChannel(
            NATIVE_TOKEN, Web3.to_checksum_address(recipient), deposit, expiration
        )
        try:
            receipt = self._send(key, call, deposit)
        except ChainError:
            raise
        except Exception as exc:
            raise ChainError(f"openChannel failed: {exc}") from None
        events = factory.events.ChannelOpened().process_receipt(receipt)
        if not events:
            raise ChainError("openChannel emitted no ChannelOpened event")
        return "0x" + bytes(events[0]["args"]["channelId"]).hex()

    def get_channel(self, channel_id: str) -> OnChainChannel:
        raw = self.factory().functions.getChannel(bytes.fromhex(channel_id[2:])).call()
        return OnChainChannel(
            sender=raw[0],
            recipient=raw[1],
            token=raw[2],
            balance=int(raw[3]),
            highest_nonce=int(raw[4]),
            expiration=int(raw[5]),
            is_closed=bool(raw[6]),
        )
