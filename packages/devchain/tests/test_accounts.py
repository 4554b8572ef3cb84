"""The fixed accounts are exactly those of the test mnemonic."""

from __future__ import annotations

from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from devchain.accounts import ACCOUNTS, FACTORY_ADDRESS, HD_PATH, MNEMONIC


def test_accounts_derive_from_the_mnemonic() -> None:
    Account.enable_unaudited_hdwallet_features()
    derived = []
    for i in range(10):
        account = Account.from_mnemonic(MNEMONIC, account_path=f"{HD_PATH}/{i}")
        derived.append((account.address, "0x" + bytes(account.key).hex()))
    assert tuple(derived) == ACCOUNTS
    assert ACCOUNTS[0][0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_factory_address_is_account_zeros_first_deployment() -> None:
    # CREATE address = keccak(rlp([sender, nonce]))[12:]; rlp of (20 bytes, 0) is d6 94 .. 80.
    sender = bytes.fromhex(ACCOUNTS[0][0][2:])
    created = keccak(b"\xd6\x94" + sender + b"\x80")[12:]
    assert to_checksum_address(created) == FACTORY_ADDRESS
