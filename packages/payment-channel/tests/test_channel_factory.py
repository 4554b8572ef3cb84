"""ChannelFactory on py-evm (a fresh devchain per test, through web3's JSON-RPC path).

Balances are checked to the wei: gas is accounted for with each receipt's
gasUsed * effectiveGasPrice.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
from eth_typing import ChecksumAddress, HexAddress, HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxParams, TxReceipt, Wei

from devchain.accounts import ACCOUNTS
from devchain.accounts import FACTORY_ADDRESS as CHANNEL_FACTORY_ADDRESS
from devchain.testing import in_process_web3
from payment_channel.artifacts import CHANNEL_FACTORY, TEST_TOKEN, load_artifact
from payment_channel.claim import SECP256K1_N, sign_claim

NATIVE = ChecksumAddress(HexAddress(HexStr("0x" + "00" * 20)))
ETH = 10**18
SENDER, SENDER_KEY = ACCOUNTS[1]
RECIPIENT, RECIPIENT_KEY = ACCOUNTS[2]
STRANGER, STRANGER_KEY = ACCOUNTS[3]


def tx(sender: ChecksumAddress, value: int = 0) -> TxParams:
    return {"from": sender, "value": Wei(value)}


def key(hex_key: str) -> bytes:
    return bytes.fromhex(hex_key[2:])


def selector(error: str) -> str:
    return "0x" + keccak(text=f"{error}()")[:4].hex()


class Chain:
    """The factory on a fresh dev chain, with helpers that keep tests short."""

    def __init__(self) -> None:
        self.w3: Web3 = in_process_web3()
        self.factory: Contract = self.w3.eth.contract(
            address=CHANNEL_FACTORY_ADDRESS, abi=CHANNEL_FACTORY.abi
        )

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def balance(self, address: ChecksumAddress) -> int:
        return int(self.w3.eth.get_balance(address))

    def transact(self, call: Any, sender: ChecksumAddress, value: int = 0) -> TxReceipt:
        tx_hash = call.transact(tx(sender, value))
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    @staticmethod
    def gas_cost(receipt: TxReceipt) -> int:
        return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])

    def open(
        self, amount: int, *, token: ChecksumAddress = NATIVE, expires_in: int = 3600
    ) -> tuple[bytes, TxReceipt]:
        expiration = self.now() + expires_in
        value = amount if token == NATIVE else 0
        call = self.factory.functions.openChannel(token, RECIPIENT, amount, expiration)
        receipt = self.transact(call, SENDER, value)
        (event,) = self.factory.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
        return bytes(event["args"]["channelId"]), receipt

    def close(
        self,
        channel_id: bytes,
        amount: int,
        nonce: int,
        signature: bytes,
        caller: ChecksumAddress = RECIPIENT,
    ) -> TxReceipt:
        call = self.factory.functions.closeChannel(channel_id, amount, nonce, signature)
        return self.transact(call, caller)

    def channel(self, channel_id: bytes) -> tuple[Any, ...]:
        return tuple(self.factory.functions.getChannel(channel_id).call())

    def deploy_token(self) -> Contract:
        token = self.w3.eth.contract(abi=TEST_TOKEN.abi, bytecode=TEST_TOKEN.bytecode)
        receipt = self.transact(token.constructor(), ACCOUNTS[0][0])
        address = cast(ChecksumAddress, receipt["contractAddress"])
        deployed = self.w3.eth.contract(address=address, abi=TEST_TOKEN.abi)
        self.transact(deployed.functions.mint(SENDER, 1000 * ETH), STRANGER)
        self.transact(deployed.functions.approve(CHANNEL_FACTORY_ADDRESS, 2**256 - 1), SENDER)
        return deployed

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.fixture
def chain() -> Chain:
    return Chain()


def assert_reverts(error: str, action: Callable[[], object]) -> None:
    with pytest.raises(ContractCustomError) as raised:
        action()
    assert raised.value.data == selector(error)


# -- open -------------------------------------------------------------------------


def test_open_native_channel_records_it_and_holds_the_deposit(chain: Chain) -> None:
    before = chain.balance(SENDER)
    channel_id, receipt = chain.open(3 * ETH)
    (event,) = chain.factory.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    assert (args["sender"], args["recipient"], args["token"]) == (SENDER, RECIPIENT, NATIVE)
    assert args["balance"] == 3 * ETH
    sender, recipient, token, balance, nonce, expiration, closed = chain.channel(channel_id)
    assert (sender, recipient, token, balance, nonce, closed) == (
        SENDER,
        RECIPIENT,
        NATIVE,
        3 * ETH,
        0,
        False,
    )
    assert expiration == args["expiration"] > chain.now()
    assert chain.balance(CHANNEL_FACTORY_ADDRESS) == 3 * ETH
    assert chain.balance(SENDER) == before - 3 * ETH - chain.gas_cost(receipt)


def test_open_token_channel_pulls_the_tokens(chain: Chain) -> None:
    token = chain.deploy_token()
    channel_id, _ = chain.open(250, token=token.address)
    assert chain.channel(channel_id)[2:4] == (token.address, 250)
    assert token.functions.balanceOf(CHANNEL_FACTORY_ADDRESS).call() == 250
    assert token.functions.balanceOf(SENDER).call() == 1000 * ETH - 250
    assert token.functions.symbol().call() == "TEST"
    assert token.functions.decimals().call() == 18


def test_channel_ids_are_unique(chain: Chain) -> None:
    first, _ = chain.open(ETH)
    second, _ = chain.open(ETH)
    assert first != second


@pytest.mark.parametrize(
    ("amount", "value", "expires_in", "recipient", "error"),
    [
        (0, 0, 3600, RECIPIENT, "ZeroAmount"),
        (ETH, ETH - 1, 3600, RECIPIENT, "WrongValue"),
        (ETH, ETH, -1, RECIPIENT, "ExpirationNotInFuture"),
        (ETH, ETH, 3600, NATIVE, "InvalidRecipient"),
        (ETH, ETH, 3600, SENDER, "InvalidRecipient"),
    ],
)
def test_open_rejects_bad_arguments(
    chain: Chain,
    amount: int,
    value: int,
    expires_in: int,
    recipient: ChecksumAddress,
    error: str,
) -> None:
    call = chain.factory.functions.openChannel(NATIVE, recipient, amount, chain.now() + expires_in)
    assert_reverts(error, lambda: call.transact(tx(SENDER, value)))


def test_open_token_channel_with_value_or_without_allowance_reverts(chain: Chain) -> None:
    token = chain.deploy_token()
    call = chain.factory.functions.openChannel(token.address, RECIPIENT, 10, chain.now() + 3600)
    assert_reverts("WrongValue", lambda: call.transact(tx(SENDER, 10)))
    # STRANGER holds no tokens and approved nothing: the pull fails.
    assert_reverts("TransferFailed", lambda: call.transact(tx(STRANGER)))


# -- close ------------------------------------------------------------------------


def test_close_pays_the_claim_and_refunds_the_rest(chain: Chain) -> None:
    channel_id, _ = chain.open(5 * ETH)
    sender_before, recipient_before = chain.balance(SENDER), chain.balance(RECIPIENT)
    claim = 2 * ETH + 12345
    signature = sign_claim(key(SENDER_KEY), channel_id, claim, 7)
    receipt = chain.close(channel_id, claim, 7, signature)
    assert chain.balance(RECIPIENT) == recipient_before + claim - chain.gas_cost(receipt)
    assert chain.balance(SENDER) == sender_before + 5 * ETH - claim
    assert chain.balance(CHANNEL_FACTORY_ADDRESS) == 0
    assert chain.channel(channel_id)[3:] == (0, 7, chain.channel(channel_id)[5], True)
    (event,) = chain.factory.events.ChannelClosed().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["claimAmount"], event["args"]["nonce"]) == (claim, 7)
    assert event["args"]["refund"] == 5 * ETH - claim


def test_close_with_the_whole_balance_and_with_v_as_0_or_1(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, ETH, 1)
    recovery_id_form = signature[:64] + bytes([signature[64] - 27])
    sender_before = chain.balance(SENDER)
    chain.close(channel_id, ETH, 1, recovery_id_form)
    assert chain.balance(SENDER) == sender_before  # nothing left to refund
    assert chain.channel(channel_id)[6] is True


def test_close_token_channel_moves_tokens(chain: Chain) -> None:
    token = chain.deploy_token()
    channel_id, _ = chain.open(1000, token=token.address)
    chain.close(channel_id, 400, 3, sign_claim(key(SENDER_KEY), channel_id, 400, 3))
    assert token.functions.balanceOf(RECIPIENT).call() == 400
    assert token.functions.balanceOf(SENDER).call() == 1000 * ETH - 400
    assert token.functions.balanceOf(CHANNEL_FACTORY_ADDRESS).call() == 0


def test_close_with_a_forged_signature_reverts_and_changes_nothing(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    forged = sign_claim(key(STRANGER_KEY), channel_id, ETH, 1)
    call = chain.factory.functions.closeChannel(channel_id, ETH, 1, forged)
    assert_reverts("InvalidSignature", lambda: call.transact(tx(RECIPIENT)))
    # Mined anyway (explicit gas skips the estimate): the transaction fails on chain.
    tx_hash = call.transact({**tx(RECIPIENT), "gas": 200_000})
    assert chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    assert chain.channel(channel_id)[3:5] == (ETH, 0)
    assert chain.balance(CHANNEL_FACTORY_ADDRESS) == ETH


def test_close_rejects_a_signature_over_other_values(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, 100, 1)
    call = chain.factory.functions.closeChannel(channel_id, 101, 1, signature)
    assert_reverts("InvalidSignature", lambda: call.transact(tx(RECIPIENT)))


@pytest.mark.parametrize("mangle", ["high-s", "short", "bad-v"])
def test_close_rejects_malformed_signatures(chain: Chain, mangle: str) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, 100, 1)
    if mangle == "high-s":
        # (r, n - s, flipped v) is the same signature's malleable twin.
        s = int.from_bytes(signature[32:64], "big")
        flipped = 55 - signature[64]
        signature = signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped])
    elif mangle == "short":
        signature = signature[:64]
    else:
        signature = signature[:64] + bytes([29])
    call = chain.factory.functions.closeChannel(channel_id, 100, 1, signature)
    assert_reverts("InvalidSignature", lambda: call.transact(tx(RECIPIENT)))


def test_close_rejects_a_nonce_not_above_the_last(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, 100, 0)
    call = chain.factory.functions.closeChannel(channel_id, 100, 0, signature)
    assert_reverts("InvalidNonce", lambda: call.transact(tx(RECIPIENT)))


def test_close_rejects_a_claim_above_the_balance(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, ETH + 1, 1)
    call = chain.factory.functions.closeChannel(channel_id, ETH + 1, 1, signature)
    assert_reverts("ClaimExceedsBalance", lambda: call.transact(tx(RECIPIENT)))


def test_close_by_anyone_but_the_recipient_reverts(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    signature = sign_claim(key(SENDER_KEY), channel_id, 100, 1)
    call = chain.factory.functions.closeChannel(channel_id, 100, 1, signature)
    for caller in (SENDER, STRANGER):
        assert_reverts("NotRecipient", partial(call.transact, tx(caller)))


def test_close_after_expiry_reverts(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH, expires_in=600)
    chain.increase_time(601)
    signature = sign_claim(key(SENDER_KEY), channel_id, 100, 1)
    call = chain.factory.functions.closeChannel(channel_id, 100, 1, signature)
    assert_reverts("ChannelHasExpired", lambda: call.transact(tx(RECIPIENT)))


def test_close_twice_or_unknown_reverts(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    chain.close(channel_id, 100, 1, sign_claim(key(SENDER_KEY), channel_id, 100, 1))
    again = chain.factory.functions.closeChannel(
        channel_id, 200, 2, sign_claim(key(SENDER_KEY), channel_id, 200, 2)
    )
    assert_reverts("ChannelIsClosed", lambda: again.transact(tx(RECIPIENT)))
    unknown = chain.factory.functions.closeChannel(b"\x01" * 32, 0, 1, b"\x00" * 65)
    assert_reverts("ChannelNotFound", lambda: unknown.transact(tx(RECIPIENT)))


def test_a_recipient_reentering_while_paid_is_stopped_by_the_guard(chain: Chain) -> None:
    reenterer = load_artifact("Reenterer")
    deploy = chain.w3.eth.contract(abi=reenterer.abi, bytecode=reenterer.bytecode)
    receipt = chain.transact(deploy.constructor(CHANNEL_FACTORY_ADDRESS), STRANGER)
    hostile = chain.w3.eth.contract(
        address=cast(ChecksumAddress, receipt["contractAddress"]), abi=reenterer.abi
    )
    expiration = chain.now() + 3600
    open_call = chain.factory.functions.openChannel(NATIVE, hostile.address, ETH, expiration)
    (event,) = chain.factory.events.ChannelOpened().process_receipt(
        chain.transact(open_call, SENDER, ETH), errors=DISCARD
    )
    channel_id = bytes(event["args"]["channelId"])
    sender_before = chain.balance(SENDER)
    signature = sign_claim(key(SENDER_KEY), channel_id, 300, 1)
    chain.transact(hostile.functions.close(channel_id, 300, 1, signature), STRANGER)
    assert hostile.functions.attempted().call() is True
    assert "0x" + hostile.functions.reentryError().call().hex() == selector("Reentrancy")
    assert chain.balance(hostile.address) == 300
    assert chain.balance(SENDER) == sender_before + ETH - 300
    assert chain.channel(channel_id)[6] is True


# -- expire -----------------------------------------------------------------------


def test_expire_before_expiration_reverts(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH, expires_in=3600)
    call = chain.factory.functions.expireChannel(channel_id)
    assert_reverts("ChannelNotExpired", lambda: call.transact(tx(SENDER)))


def test_expire_after_expiration_refunds_the_sender(chain: Chain) -> None:
    channel_id, _ = chain.open(2 * ETH, expires_in=600)
    chain.increase_time(600)
    sender_before = chain.balance(SENDER)
    receipt = chain.transact(chain.factory.functions.expireChannel(channel_id), STRANGER)
    assert chain.balance(SENDER) == sender_before + 2 * ETH
    assert chain.balance(CHANNEL_FACTORY_ADDRESS) == 0
    (event,) = chain.factory.events.ChannelExpired().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["refund"] == 2 * ETH
    assert chain.channel(channel_id)[3] == 0 and chain.channel(channel_id)[6] is True
    call = chain.factory.functions.expireChannel(channel_id)
    assert_reverts("ChannelIsClosed", lambda: call.transact(tx(SENDER)))


# -- top up -----------------------------------------------------------------------


def test_top_up_increases_the_balance(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH)
    receipt = chain.transact(
        chain.factory.functions.topUpChannel(channel_id, ETH // 2), SENDER, ETH // 2
    )
    assert chain.channel(channel_id)[3] == ETH + ETH // 2
    assert chain.balance(CHANNEL_FACTORY_ADDRESS) == ETH + ETH // 2
    (event,) = chain.factory.events.ChannelToppedUp().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["amount"], event["args"]["balance"]) == (ETH // 2, ETH + ETH // 2)
    # The larger balance can now be claimed.
    signature = sign_claim(key(SENDER_KEY), channel_id, ETH + 1, 1)
    chain.close(channel_id, ETH + 1, 1, signature)


def test_top_up_token_channel(chain: Chain) -> None:
    token = chain.deploy_token()
    channel_id, _ = chain.open(100, token=token.address)
    chain.transact(chain.factory.functions.topUpChannel(channel_id, 50), SENDER)
    assert chain.channel(channel_id)[3] == 150
    assert token.functions.balanceOf(CHANNEL_FACTORY_ADDRESS).call() == 150


def test_top_up_rejects_wrong_value_strangers_and_expired_channels(chain: Chain) -> None:
    channel_id, _ = chain.open(ETH, expires_in=600)
    call = chain.factory.functions.topUpChannel(channel_id, 10)
    assert_reverts("WrongValue", lambda: call.transact(tx(SENDER, 9)))
    assert_reverts("NotSender", lambda: call.transact(tx(STRANGER, 10)))
    chain.increase_time(600)
    assert_reverts("ChannelHasExpired", lambda: call.transact(tx(SENDER, 10)))
    assert chain.channel(channel_id)[3] == ETH


# -- getChannel -------------------------------------------------------------------


def test_get_channel_of_unknown_id_is_all_zeros(chain: Chain) -> None:
    assert chain.channel(b"\xab" * 32) == (NATIVE, NATIVE, NATIVE, 0, 0, 0, False)
