"""The committed artifacts: loadable, binding ABI, and reproducible from source."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from payment_channel import artifacts
from payment_channel.artifacts import ARTIFACTS_DIR, Artifact, load_artifact

PACKAGE = Path(__file__).resolve().parents[1]


def _signature(entry: dict[str, object]) -> str:
    inputs = entry["inputs"]
    assert isinstance(inputs, list)
    return f"{entry['name']}({','.join(str(i['type']) for i in inputs)})"


def test_channel_factory_abi_matches_the_contract() -> None:
    factory = artifacts.CHANNEL_FACTORY
    assert isinstance(factory, Artifact)
    functions = {_signature(e) for e in factory.abi if e["type"] == "function"}
    assert functions == {
        "openChannel(address,address,uint256,uint256)",
        "closeChannel(bytes32,uint256,uint256,bytes)",
        "expireChannel(bytes32)",
        "topUpChannel(bytes32,uint256)",
        "getChannel(bytes32)",
    }
    open_channel = factory.function_abi("openChannel")
    assert open_channel["stateMutability"] == "payable"
    assert [o["type"] for o in open_channel["outputs"]] == ["bytes32"]
    assert factory.function_abi("topUpChannel")["stateMutability"] == "payable"
    get_channel = factory.function_abi("getChannel")
    assert [(o["name"], o["type"]) for o in get_channel["outputs"]] == [
        ("sender", "address"),
        ("recipient", "address"),
        ("token", "address"),
        ("balance", "uint256"),
        ("highestNonce", "uint256"),
        ("expiration", "uint256"),
        ("isClosed", "bool"),
    ]
    opened = factory.function_abi("ChannelOpened")
    assert [(i["name"], i["type"], i["indexed"]) for i in opened["inputs"]] == [
        ("channelId", "bytes32", True),
        ("sender", "address", True),
        ("recipient", "address", True),
        ("token", "address", False),
        ("balance", "uint256", False),
        ("expiration", "uint256", False),
    ]


def test_artifacts_load_and_are_cached() -> None:
    token = load_artifact("TestToken")
    assert token is artifacts.TEST_TOKEN
    assert token.bytecode.startswith("0x60") and len(token.deployed_bytecode) > 100
    assert token.compiler_version.startswith("0.8.28+")
    assert token.compiler_settings["optimizer"] == {"enabled": True, "runs": 200}


@pytest.mark.parametrize("name", ["Missing", "../ChannelFactory", ""])
def test_unknown_artifact_is_a_clear_error(name: str) -> None:
    with pytest.raises(LookupError, match="no compiled artifact"):
        load_artifact(name)


def test_unknown_module_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = artifacts.NOT_AN_ARTIFACT


def test_pinned_solc_reproduces_the_committed_artifacts(tmp_path: Path) -> None:
    solc = PACKAGE / "node_modules" / "solc" / "package.json"
    node = shutil.which("node")
    assert node is not None, "node is needed to recompile the contracts"
    assert solc.is_file(), "run scripts/bootstrap: it installs the pinned solc-js"
    pinned = json.loads((PACKAGE / "package.json").read_text())["devDependencies"]["solc"]
    assert json.loads(solc.read_text())["version"] == pinned
    subprocess.run(
        [node, "scripts/compile.mjs", "--out", str(tmp_path)],
        cwd=PACKAGE,
        check=True,
        capture_output=True,
    )
    for name in ("ChannelFactory", "TestToken", "Reenterer"):
        fresh = json.loads((tmp_path / f"{name}.json").read_text())
        committed = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert fresh["bytecode"] == committed["bytecode"], f"{name}: recompile and commit"
        assert fresh == committed
