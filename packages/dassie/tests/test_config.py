import subprocess
import sys
from pathlib import Path

import pytest

from dassie.config import ConfigError, load_config

KEY = "0x" + "11" * 32


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``dassie serve`` with exactly ``env``, run until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "dassie.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {"RPC_AUTH_TOKEN": "x" * 32, "LEDGER_DB_PATH": str(tmp_path / "ledger.db")}
    base.update(extra)
    return base


def test_defaults(tmp_path: Path) -> None:
    config = load_config(env(tmp_path))
    assert (config.port, config.host, config.expiry_margin) == (7768, "0.0.0.0", 3600)
    assert config.chains == ()


def test_local_preset(tmp_path: Path) -> None:
    config = load_config(
        env(tmp_path, SETTLEMENT_LOCAL_ENABLED="true", SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY=KEY)
    )
    (chain,) = config.chains
    assert chain.chain_id == 31337
    assert chain.rpc_url == "http://127.0.0.1:8545"
    assert chain.factory_address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert chain.assets == {"ETH": "0x0000000000000000000000000000000000000000"}
    assert chain.tx_timeout == 300


def test_custom_chain(tmp_path: Path) -> None:
    config = load_config(
        env(
            tmp_path,
            SETTLEMENT_POLYGON_ENABLED="1",
            SETTLEMENT_POLYGON_RPC_URL="https://polygon.example",
            SETTLEMENT_POLYGON_FACTORY_ADDRESS="0x" + "ab" * 20,
            SETTLEMENT_POLYGON_RELAY_PRIVATE_KEY=KEY,
            SETTLEMENT_POLYGON_CHAIN_ID="137",
            SETTLEMENT_POLYGON_ASSETS="POL",
            SETTLEMENT_POLYGON_SETTLE_THRESHOLD="1000",
        )
    )
    (chain,) = config.chains
    assert (chain.name, chain.chain_id, chain.settle_threshold) == ("POLYGON", 137, 1000)
    assert chain.currency_of("0x" + "00" * 20) == "POL"


@pytest.mark.parametrize(
    ("extra", "variable", "words"),
    [
        ({"RPC_AUTH_TOKEN": ""}, "RPC_AUTH_TOKEN", "required"),
        ({"RPC_AUTH_TOKEN": "short"}, "RPC_AUTH_TOKEN", "too short"),
        ({"DASSIE_PORT": "http"}, "DASSIE_PORT", "integer"),
        ({"DASSIE_PORT": "70000"}, "DASSIE_PORT", "0..65535"),
        ({"SETTLEMENT_LOCAL_ENABLED": "true"}, "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY", "required"),
        ({"SETTLEMENT_LOCAL_ENABLED": "maybe"}, "SETTLEMENT_LOCAL_ENABLED", "true or false"),
        (
            {"SETTLEMENT_LOCAL_ENABLED": "true", "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": "0x1234"},
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY",
            "not a private key",
        ),
        (
            {
                "SETTLEMENT_LOCAL_ENABLED": "true",
                "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": "0x" + "00" * 32,
            },
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY",
            "range",
        ),
        (
            {
                "SETTLEMENT_LOCAL_ENABLED": "true",
                "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": KEY,
                "SETTLEMENT_LOCAL_FACTORY_ADDRESS": "0x1234",
            },
            "SETTLEMENT_LOCAL_FACTORY_ADDRESS",
            "not an address",
        ),
        (
            {"SETTLEMENT_BASE_ENABLED": "true", "SETTLEMENT_BASE_RELAY_PRIVATE_KEY": KEY},
            "SETTLEMENT_BASE_FACTORY_ADDRESS",
            "required",
        ),
        (
            {"SETTLEMENT_NEW_ENABLED": "true", "SETTLEMENT_NEW_RELAY_PRIVATE_KEY": KEY},
            "SETTLEMENT_NEW_CHAIN_ID",
            "required",
        ),
        (
            {
                "SETTLEMENT_LOCAL_ENABLED": "true",
                "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": KEY,
                "SETTLEMENT_LOCAL_TX_TIMEOUT": "0",
            },
            "SETTLEMENT_LOCAL_TX_TIMEOUT",
            "",
        ),
    ],
)
def test_bad_config_names_the_variable(
    tmp_path: Path, extra: dict[str, str], variable: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env(tmp_path, **extra))
    message = str(info.value)
    assert message.startswith(variable + ":")
    assert words in message
    assert "\n" not in message


def test_unusable_ledger_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^LEDGER_DB_PATH: cannot create directory"):
        load_config(env(tmp_path, LEDGER_DB_PATH=str(blocker / "sub" / "ledger.db")))
    with pytest.raises(ConfigError, match=r"^LEDGER_DB_PATH: .* is a directory"):
        load_config(env(tmp_path, LEDGER_DB_PATH=str(tmp_path)))


def test_serve_exits_2_with_one_line(tmp_path: Path) -> None:
    result = serve({"RPC_AUTH_TOKEN": "short", "LEDGER_DB_PATH": str(tmp_path / "l.db")})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "RPC_AUTH_TOKEN" in lines[0]
    assert not (tmp_path / "l.db").exists()


def test_serve_exits_2_on_bad_interledger_config(tmp_path: Path) -> None:
    result = serve(
        {
            "RPC_AUTH_TOKEN": "x" * 40,
            "LEDGER_DB_PATH": str(tmp_path / "l.db"),
            "ILP_PEERS": "not json",
        }
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ILP_PEERS" in lines[0]


def test_claim_verify_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dassie import config as config_module

    assert load_config(env(tmp_path, CLAIM_VERIFY_WORKERS="3")).verify_workers == 3
    assert load_config(env(tmp_path, CLAIM_VERIFY_WORKERS="0")).verify_workers == 0
    monkeypatch.setattr(config_module, "available_cpus", lambda: 1)
    assert load_config(env(tmp_path)).verify_workers == 0  # one CPU: recover in process
    monkeypatch.setattr(config_module, "available_cpus", lambda: 8)
    assert load_config(env(tmp_path, CLAIM_VERIFY_WORKERS=" ")).verify_workers == 1
    for bad in ("two", "-1", "65"):
        with pytest.raises(ConfigError, match=r"^CLAIM_VERIFY_WORKERS: "):
            load_config(env(tmp_path, CLAIM_VERIFY_WORKERS=bad))
    assert config_module.available_cpus() == 8
    monkeypatch.undo()
    assert 1 <= config_module.available_cpus() <= (config_module.os.cpu_count() or 1)


def test_serve_exits_2_when_the_ledger_holds_another_ilp_asset(tmp_path: Path) -> None:
    """A problem found while starting (here: ``ILP_ASSET_CODE`` changed under a ledger
    with Interledger balances) is one line and exit 2 too, not a traceback."""
    import asyncio

    from dassie.ledger import LedgerStore
    from dassie.ledger.accounts import ilp_asset, peer_account

    async def old_ledger() -> None:
        store = await LedgerStore.open(tmp_path / "l.db")
        await store.create_account(peer_account("alice"), ilp_asset("ETH"))
        await store.close()

    asyncio.run(old_ledger())
    result = serve(
        {
            "RPC_AUTH_TOKEN": "x" * 40,
            "LEDGER_DB_PATH": str(tmp_path / "l.db"),
            "DASSIE_PORT": "0",
            "ILP_ASSET_CODE": "USD",
            "ILP_PEERS": '[{"name": "alice", "token": "' + "k" * 20 + '"}]',
        }
    )
    assert result.returncode == 2, result.stderr
    *before, last = result.stderr.strip().splitlines()
    assert last.startswith("dassie: configuration error: ILP_ASSET_CODE:"), result.stderr
    assert "ilp/ETH" in last
    # only the start-up line before it: no traceback, and what had started (the ledger,
    # the recovery worker) was closed in order rather than torn down with warnings
    assert [line for line in before if " INFO " not in line] == [], result.stderr
