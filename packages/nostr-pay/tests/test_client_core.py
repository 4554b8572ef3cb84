"""nostr-pay's local pieces: key file, channel state file, reading fees from NIP-11."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nostr_pay.cli import parser
from nostr_pay.fees import RelayInfoError, pay_target, price_for
from nostr_pay.state import ChannelState, StateError, StateFile
from nostr_pay.wallet import WalletError, load_or_create

NIP11 = {
    "limitation": {"payment_required": True},
    "fees": {
        "publication": [
            {"kinds": [30023], "amount": 5000, "unit": "ETH"},
            {"amount": 100, "unit": "USDC"},
            {"amount": 1000, "unit": "ETH"},
        ]
    },
    "payments": {"chains": [{"chainId": 31337, "factory": "0xF", "recipient": "0xR"}]},
}


def test_wallet_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "home")
    path = tmp_path / "home" / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create(tmp_path / "home")
    assert again == first
    assert len(first.nostr_pubkey) == 64 and first.evm_address.startswith("0x")
    override = load_or_create(tmp_path / "home", b"\x01" * 32)
    assert override.evm_key == b"\x01" * 32 and override.nostr_secret == first.nostr_secret
    assert load_or_create(tmp_path / "home").evm_key == first.evm_key  # file untouched


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "cannot read keys"),
        ("[]", "not a JSON object"),
        ('{"nostr_secret": "zz", "evm_private_key": "00"}', "nostr_secret is not hex"),
        ('{"nostr_secret": "' + "11" * 32 + '", "evm_private_key": "0x12"}', "not 32 bytes"),
    ],
)
def test_a_broken_key_file_is_a_clear_error_and_kept(tmp_path: Path, body: str, error: str) -> None:
    (tmp_path / "keys.json").write_text(body)
    with pytest.raises(WalletError, match=error):
        load_or_create(tmp_path)
    assert (tmp_path / "keys.json").read_text() == body


def test_channel_state_counts_up_across_runs(tmp_path: Path) -> None:
    state = ChannelState(31337, "0x" + "ab" * 32, "0xS", "0xR", "ETH", 10_000, 2_000_000_000)
    files = StateFile(tmp_path)
    with files.locked() as channels:
        channels[state.key] = state
    for _ in range(3):
        with files.locked() as channels:
            current = channels[state.key]
            amount, nonce = current.next_claim(1000)
            channels[state.key] = current.signed(nonce).accepted(amount, nonce)
    final = StateFile(tmp_path).load()[state.key]
    assert (final.claim_amount, final.nonce, final.remaining) == (3000, 3, 7000)
    # A refused claim spends its nonce but not the amount.
    with files.locked() as channels:
        amount, nonce = channels[state.key].next_claim(1000)
        channels[state.key] = channels[state.key].signed(nonce)
    final = files.load()[state.key]
    assert (final.claim_amount, final.nonce) == (3000, 4)
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_exception_inside_the_lock_saves_nothing(tmp_path: Path) -> None:
    files = StateFile(tmp_path)
    state = ChannelState(1, "0x" + "00" * 32, "0xS", "0xR", "ETH", 1, 1)
    with pytest.raises(RuntimeError), files.locked() as channels:
        channels[state.key] = state
        raise RuntimeError("boom")
    assert files.load() == {}


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "channels.json").write_text(json.dumps({"channels": {"k": {"bogus": 1}}}))
    with pytest.raises(StateError, match="corrupt channel state"):
        StateFile(tmp_path).load()


def test_prices_and_target_from_nip11() -> None:
    assert price_for(NIP11, 1, "ETH") == 1000
    assert price_for(NIP11, 30023, "ETH") == 5000
    assert price_for(NIP11, 1, "USDC") == 100
    assert price_for({}, 1, "ETH") == 0  # a free relay
    with pytest.raises(RelayInfoError, match="publishes no fees"):
        price_for({"limitation": {"payment_required": True}}, 1, "ETH")
    with pytest.raises(RelayInfoError, match="prices no kind 1 event in DAI"):
        price_for(NIP11, 1, "DAI")
    target = pay_target(NIP11, 31337)
    assert (target.factory, target.recipient) == ("0xF", "0xR")
    assert pay_target(NIP11, 31337, recipient="0xX").recipient == "0xX"
    with pytest.raises(RelayInfoError, match="no recipient address on chain 8453"):
        pay_target(NIP11, 8453)


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--deposit", "-5", "info"], ["--evm-key", "xyz", "info"], []):
        with pytest.raises(SystemExit) as exc:
            parser().parse_args(argv)
        assert exc.value.code == 2
    assert "must be positive" in capsys.readouterr().err
