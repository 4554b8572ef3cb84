"""One EVM chain through web3 (AsyncWeb3 + AsyncHTTPProvider).

It is the node's :class:`~dassie.claims.channels.ChannelSource` for the chain
(``getChannel``, ``ChannelOpened`` logs) and sends ``closeChannel`` transactions
signed with the relay's key. Every call records the endpoint's health; failures
surface as :class:`~dassie.claims.channels.ChainUnavailable`, never crash the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import Nonce, TxParams

from payment_channel.artifacts import load_artifact
from payment_channel.keccak import keccak256

from ..claims.channels import ChainUnavailable, ChannelState
from ..config import ZERO_ADDRESS, ChainConfig
from .fees import FEE_FIELDS, replacement_fees

# The subset of the channel factory's ABI the node uses (contract: Payment-channel contract).
FACTORY_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "getChannel",
        "stateMutability": "view",
        "inputs": [{"name": "channelId", "type": "bytes32"}],
        "outputs": [
            {"name": "sender", "type": "address"},
            {"name": "recipient", "type": "address"},
            {"name": "token", "type": "address"},
            {"name": "balance", "type": "uint256"},
            {"name": "highestNonce", "type": "uint256"},
            {"name": "expiration", "type": "uint256"},
            {"name": "isClosed", "type": "bool"},
        ],
    },
    {
        "type": "function",
        "name": "closeChannel",
        "stateMutability": "nonpayable",
        "inputs": [
            {"name": "channelId", "type": "bytes32"},
            {"name": "claimAmount", "type": "uint256"},
            {"name": "nonce", "type": "uint256"},
            {"name": "signature", "type": "bytes"},
        ],
        "outputs": [],
    },
    {
        "type": "event",
        "name": "ChannelOpened",
        "anonymous": False,
        "inputs": [
            {"name": "channelId", "type": "bytes32", "indexed": True},
            {"name": "sender", "type": "address", "indexed": True},
            {"name": "recipient", "type": "address", "indexed": True},
            {"name": "token", "type": "address", "indexed": False},
            {"name": "balance", "type": "uint256", "indexed": False},
            {"name": "expiration", "type": "uint256", "indexed": False},
        ],
    },
]


def _custom_errors() -> dict[str, str]:
    """The channel factory's custom errors by selector (``0x`` + 8 hex -> ``Name()``)."""
    names = {}
    for item in load_artifact("ChannelFactory").abi:
        if item["type"] == "error":
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            names["0x" + keccak256(signature.encode())[:4].hex()] = signature
    return names


CUSTOM_ERRORS = _custom_errors()


class TransactionRefused(ChainUnavailable):
    """The chain's endpoint answered and refused the transaction (it would revert, or
    breaks a nonce or fee rule): no outage, so the chain's health stays ok."""


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    gas_cost: int
    block_number: int


class EvmChain:
    """The node's view of, and hand on, one EVM chain."""

    def __init__(self, config: ChainConfig, *, timeout: float = 10.0) -> None:
        self.config = config
        self.w3 = AsyncWeb3(AsyncHTTPProvider(config.rpc_url, request_kwargs={"timeout": timeout}))
        self.factory = self.w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(config.factory_address), abi=FACTORY_ABI
        )
        self.status = "unknown"
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self._send_lock = asyncio.Lock()
        self._sent: dict[str, tuple[int, dict[str, int]]] = {}
        """Transactions sent since start: hash -> (nonce, fee fields), for replacements."""
        self._chain_id_checked = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def relay_address(self) -> ChecksumAddress:
        return AsyncWeb3.to_checksum_address(self.config.relay_address)

    # -- health ---------------------------------------------------------

    def _ok(self) -> None:
        self.status = "ok"
        self.last_ok_at = time.time()

    def _failed(self, exc: BaseException) -> ChainUnavailable:
        self._chain_id_checked = False
        self.status = "unreachable"
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        return ChainUnavailable(f"{self.name}: {self.last_error}")

    def _send_failed(self, exc: BaseException) -> ChainUnavailable:
        """A refusal when the endpoint answered it, else the endpoint is unreachable."""
        if isinstance(exc, ContractLogicError | Web3RPCError):
            self._ok()
            reason = str(exc)
            if isinstance(exc, ContractCustomError) and isinstance(exc.data, str):
                reason = CUSTOM_ERRORS.get(exc.data[:10], reason)
            return TransactionRefused(f"{self.name} refused the transaction: {reason}")
        return self._failed(exc)

    def health(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "chainId": self.config.chain_id,
            "lastError": self.last_error,
            "lastOkAt": self.last_ok_at,
        }

    async def probe(self) -> int:
        """The latest block number (raises ChainUnavailable).

        The endpoint's chain id is checked on the first probe and on the first after
        any failure (an endpoint that went away may come back as another chain), not
        on every poll.
        """
        try:
            chain_id = None if self._chain_id_checked else await self.w3.eth.chain_id
            block = await self.w3.eth.block_number
        except Exception as exc:
            raise self._failed(exc) from exc
        if chain_id is not None and chain_id != self.config.chain_id:
            raise self._failed(
                ValueError(f"endpoint is chain {chain_id}, expected {self.config.chain_id}")
            )
        self._chain_id_checked = True
        self._ok()
        return int(block)

    # -- channels -------------------------------------------------------

    def _channel(
        self, channel_id: str, sender: str, recipient: str, token: str, balance: int,
        nonce: int, expiration: int, closed: bool,
    ) -> ChannelState:  # fmt: skip
        return ChannelState(
            chain=self.name,
            channel_id=channel_id,
            sender=AsyncWeb3.to_checksum_address(sender),
            recipient=AsyncWeb3.to_checksum_address(recipient),
            token=AsyncWeb3.to_checksum_address(token),
            currency=self.config.currency_of(token),
            deposit=int(balance),
            highest_nonce=int(nonce),
            expiration=int(expiration),
            closed=bool(closed),
        )

    async def get_channel(self, channel_id: str) -> ChannelState | None:
        try:
            raw = await self.factory.functions.getChannel(bytes.fromhex(channel_id[2:])).call()
        except Exception as exc:
            raise self._failed(exc) from exc
        self._ok()
        sender, recipient, token, balance, nonce, expiration, closed = raw
        if int(sender, 16) == 0:
            return None
        return self._channel(
            channel_id, sender, recipient, token, balance, nonce, expiration, closed
        )

    async def opened_channels(self, from_block: int, to_block: int) -> list[ChannelState]:
        """Channels opened to the relay's address in ``from_block..to_block``, as opened.

        Each is the state its ``ChannelOpened`` log describes (deposit as first paid
        in, nonce 0, open): true when the log is new, possibly stale for an old one
        (topped up since, or closed by this node before a restart).
        """
        try:
            logs = await self.factory.events.ChannelOpened.get_logs(
                from_block=from_block,
                to_block=to_block,
                argument_filters={"recipient": self.relay_address},
            )
        except Exception as exc:
            raise self._failed(exc) from exc
        self._ok()
        opened = []
        for log in logs:
            a = log["args"]
            channel_id = "0x" + bytes(a["channelId"]).hex()
            state = self._channel(
                channel_id, a["sender"], a["recipient"], a["token"], a["balance"], 0,
                a["expiration"], False,
            )  # fmt: skip
            opened.append(state)
        return opened

    # -- settlement -----------------------------------------------------

    async def close_channel(
        self, channel_id: str, claim_amount: int, nonce: int, signature: str
    ) -> str:
        """Send ``closeChannel`` from the relay's address; returns the transaction hash."""
        async with self._send_lock:
            try:
                tx_nonce = await self.w3.eth.get_transaction_count(self.relay_address, "pending")
                return await self._send_close(channel_id, claim_amount, nonce, signature, tx_nonce)
            except ChainUnavailable:
                raise
            except Exception as exc:
                raise self._send_failed(exc) from exc

    async def resend_close(
        self, previous_hash: str, channel_id: str, claim_amount: int, nonce: int, signature: str
    ) -> str | None:
        """Send the close again because ``previous_hash`` is not mined after the timeout.

        While the chain still holds the previous transaction, the new one takes its
        nonce with fees raised by 12.5% (a replacement: only one of them can be
        mined). If the chain forgot it (dropped from the mempool), the new one takes
        the nonce it had when that slot is still free, or the next free one. Returns
        None when the previous transaction turns out to be mined after all.
        """
        async with self._send_lock:
            try:
                try:
                    previous = await self.w3.eth.get_transaction(previous_hash)  # type: ignore[arg-type]
                except TransactionNotFound:
                    previous = None
                if previous is not None and previous.get("blockNumber") is not None:
                    return None
                mined_count = await self.w3.eth.get_transaction_count(self.relay_address, "latest")
                sent = self._sent.get(previous_hash)
                if previous is not None:
                    tx_nonce = int(previous["nonce"])
                    fees = _fee_fields(previous)
                elif sent is not None and sent[0] >= mined_count:
                    tx_nonce, fees = sent
                else:
                    tx_nonce = await self.w3.eth.get_transaction_count(
                        self.relay_address, "pending"
                    )
                    fees = sent[1] if sent is not None else {}
                return await self._send_close(
                    channel_id, claim_amount, nonce, signature, tx_nonce, fees
                )
            except ChainUnavailable:
                raise
            except Exception as exc:
                raise self._send_failed(exc) from exc

    async def _send_close(
        self,
        channel_id: str,
        claim_amount: int,
        nonce: int,
        signature: str,
        tx_nonce: int,
        previous_fees: dict[str, int] | None = None,
    ) -> str:
        params: TxParams = {
            "from": self.relay_address,
            "nonce": Nonce(tx_nonce),
            "chainId": self.config.chain_id,
        }
        built = await self.factory.functions.closeChannel(
            bytes.fromhex(channel_id[2:]), claim_amount, nonce, bytes.fromhex(signature[2:])
        ).build_transaction(params)
        tx: dict[str, Any] = dict(built)
        if previous_fees is not None:
            tx.update(replacement_fees(previous_fees, _fee_fields(tx)))
        signed = Account.sign_transaction(tx, self.config.relay_private_key)
        tx_hash = "0x" + bytes(await self.w3.eth.send_raw_transaction(signed.raw_transaction)).hex()
        self._sent[tx_hash] = (tx_nonce, _fee_fields(tx))
        self._ok()
        return tx_hash

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The mined receipt, or None while pending (raises ChainUnavailable)."""
        try:
            raw = await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception as exc:
            if type(exc).__name__ == "TransactionNotFound":
                self._ok()
                return None
            raise self._failed(exc) from exc
        self._ok()
        price = raw.get("effectiveGasPrice") or 0
        return Receipt(
            tx_hash=tx_hash,
            status=int(raw["status"]),
            gas_cost=int(raw["gasUsed"]) * int(price),
            block_number=int(raw["blockNumber"]),
        )


def _fee_fields(tx: Mapping[str, Any]) -> dict[str, int]:
    return {name: int(tx[name]) for name in FEE_FIELDS if tx.get(name) is not None}


__all__ = ["ZERO_ADDRESS", "EvmChain", "Receipt", "TransactionRefused"]
