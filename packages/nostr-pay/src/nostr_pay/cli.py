"""``nostr-pay``: publish notes to a paid relay, paying each through a payment channel.

nostr-pay --dev publish "hello, paid world"
nostr-pay info
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from nostr_protocol.keys import sign_event
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim

from .chain import Chain, ChainError
from .fees import RelayInfoError, pay_target, price_for
from .relay import OkResult, RelayConnection, RelayError, fetch_nip11
from .state import ChannelState, StateError, StateFile
from .wallet import DEFAULT_HOME, Wallet, WalletError, load_or_create

CURRENCY = "ETH"
DEFAULT_DEPOSIT = 10**16  # 0.01 ETH
DEFAULT_EXPIRES_IN = 7 * 24 * 3600
EXPIRY_MARGIN = 3600  # the node refuses channels this close to expiry


class UsageError(Exception):
    """A bad option value."""


def _hex_key(text: str) -> bytes:
    raw = text[2:] if text.startswith("0x") else text
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("not a hex key") from None
    if len(key) != 32:
        raise argparse.ArgumentTypeError("a key is 32 bytes (64 hex)")
    return key


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nostr-pay",
        description="Publish notes to a paid Nostr relay, paying each through a payment channel.",
    )
    p.add_argument("--home", type=Path, default=DEFAULT_HOME, help="key and channel files")
    p.add_argument("--relay", default="ws://127.0.0.1:8008", help="relay WebSocket URL")
    p.add_argument("--rpc-url", default="http://127.0.0.1:8545", help="EVM JSON-RPC URL")
    p.add_argument("--dev", action="store_true", help="use the dev chain (funded account 1)")
    p.add_argument("--evm-key", type=_hex_key, help="EVM private key that funds the channel")
    p.add_argument("--factory", help="channel factory address (default: from the relay)")
    p.add_argument("--recipient", help="relay's payment address (default: from the relay)")
    p.add_argument("--deposit", type=_positive, default=DEFAULT_DEPOSIT, help="wei per new channel")
    p.add_argument("--expires-in", type=_positive, default=DEFAULT_EXPIRES_IN, help="seconds")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish a note, paying for it")
    pub.add_argument("text")
    pub.add_argument("--kind", type=int, default=1)
    sub.add_parser("open", help="open (or show) the channel to the relay")
    sub.add_parser("info", help="show keys, the relay's prices and the channel")
    return p


class Client:
    """One run of the command: a wallet, a relay, a chain and the local channel state."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        override: bytes | None = args.evm_key
        self.factory: str | None = args.factory
        self.dev_recipient: str | None = None
        if args.dev:
            from devchain.accounts import ACCOUNTS, FACTORY_ADDRESS

            from .devstack import RELAY_ACCOUNT

            override = override or bytes.fromhex(ACCOUNTS[1][1][2:])
            self.factory = self.factory or FACTORY_ADDRESS
            # scripts/run's node settles as this account; used if NIP-11 names no recipient.
            self.dev_recipient = ACCOUNTS[RELAY_ACCOUNT][0]
        self.wallet: Wallet = load_or_create(args.home, override)
        self.state = StateFile(args.home)
        self.nip11: dict[str, Any] = {}

    async def load_relay(self) -> None:
        self.nip11 = await fetch_nip11(self.args.relay)

    def _channel(self, chain: Chain, channels: dict[str, ChannelState], price: int) -> ChannelState:
        """The usable channel for this relay, opened on chain when there is none."""
        chain_id = chain.chain_id
        try:
            target = pay_target(self.nip11, chain_id, self.factory, self.args.recipient)
        except RelayInfoError:
            if self.dev_recipient is None:
                raise
            target = pay_target(self.nip11, chain_id, self.factory, self.dev_recipient)
        chain.factory_address = target.factory
        key = ChannelState.key_for(chain_id, target.recipient, self.wallet.evm_address)
        now = int(time.time())
        state = channels.get(key)
        if (
            state is not None
            and state.remaining >= price
            and state.expiration > now + EXPIRY_MARGIN
        ):
            on_chain = chain.get_channel(state.channel_id)
            # A dev chain restarts empty; a settled channel is closed: then open a new one.
            if on_chain.sender.lower() == state.sender.lower() and not on_chain.is_closed:
                return state
        deposit = max(self.args.deposit, price)
        expiration = now + self.args.expires_in
        channel_id = chain.open_channel(self.wallet.evm_key, target.recipient, deposit, expiration)
        state = ChannelState(
            chain_id=chain_id,
            channel_id=channel_id,
            sender=self.wallet.evm_address,
            recipient=target.recipient,
            currency=CURRENCY,
            deposit=deposit,
            expiration=expiration,
        )
        print(f"opened channel {channel_id}: {deposit} wei to {target.recipient}, chain {chain_id}")
        channels[key] = state
        return state

    async def publish(self, text: str, kind: int) -> OkResult:
        await self.load_relay()
        price = price_for(self.nip11, kind, CURRENCY)
        if price == 0:
            event = sign_event(self.wallet.nostr_secret, kind=kind, content=text)
            async with RelayConnection(self.args.relay) as relay:
                return await relay.publish(event)
        chain = Chain(self.args.rpc_url, self.factory)
        with self.state.locked() as channels:
            state = await asyncio.to_thread(self._channel, chain, channels, price)
            amount, nonce = state.next_claim(price)
            channel_id = bytes.fromhex(state.channel_id[2:])
            signature = sign_claim(self.wallet.evm_key, channel_id, amount, nonce)
            tag = PaymentClaim(Claim(channel_id, amount, nonce, signature), CURRENCY).to_tag()
            event = sign_event(self.wallet.nostr_secret, kind=kind, content=text, tags=[tag])
            channels[state.key] = state = state.signed(nonce)
            self.state.save(channels)  # the nonce is spent whatever happens next
            sent = False
            try:
                async with RelayConnection(self.args.relay) as relay:
                    sent = True
                    result = await relay.publish_until_answered(event)
            except RelayError:
                if sent:  # unanswered: the claim may have been recorded, count it as spent
                    channels[state.key] = state.accepted(amount, nonce)
                    self.state.save(channels)
                raise
            if result.message.startswith("error:"):
                # The node may have recorded the claim after the relay gave up waiting:
                # count it as spent, so the next claim covers its price (at worst once more).
                channels[state.key] = state.accepted(amount, nonce)
            if result.accepted:
                channels[state.key] = state = state.accepted(amount, nonce)
                print(
                    f"paid {price} wei on channel {state.channel_id} "
                    f"(total {state.claim_amount}, nonce {state.nonce}, "
                    f"{state.remaining} wei left)"
                )
        return result

    async def open(self) -> ChannelState:
        await self.load_relay()
        price = price_for(self.nip11, 1, CURRENCY)
        chain = Chain(self.args.rpc_url, self.factory)
        with self.state.locked() as channels:
            return await asyncio.to_thread(self._channel, chain, channels, max(price, 1))

    async def info(self) -> None:
        print(f"nostr pubkey : {self.wallet.nostr_pubkey}")
        print(f"evm address  : {self.wallet.evm_address}")
        try:
            await self.load_relay()
            print(f"relay        : {self.args.relay} ({self.nip11.get('name', '?')})")
            print(f"fees         : {self.nip11.get('fees')}")
            print(f"payments     : {self.nip11.get('payments')}")
        except RelayError as exc:
            print(f"relay        : {exc}")
        for state in self.state.load().values():
            print(
                f"channel      : {state.channel_id} on chain {state.chain_id} "
                f"to {state.recipient}: paid {state.claim_amount} of {state.deposit} wei, "
                f"nonce {state.nonce}"
            )


async def run(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.command == "info":
        await client.info()
        return 0
    if args.command == "open":
        state = await client.open()
        print(f"channel {state.channel_id}: {state.remaining} of {state.deposit} wei unspent")
        return 0
    result = await client.publish(args.text, args.kind)
    status = "true" if result.accepted else "false"
    print(f'["OK", "{result.event_id}", {status}, "{result.message}"]')
    return 0 if result.accepted else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (WalletError, StateError, RelayError, RelayInfoError, ChainError, UsageError) as exc:
        print(f"nostr-pay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
