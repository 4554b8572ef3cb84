"""The command: ``python -m devchain`` in a real subprocess, and its argument errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from web3 import HTTPProvider, Web3

from devchain.accounts import ACCOUNTS, CHAIN_ID, FACTORY_ADDRESS
from devchain.cli import main
from devchain.testing import devchain_process


def test_devchain_process_answers_web3() -> None:
    with devchain_process() as chain:
        w3 = Web3(HTTPProvider(chain.url))
        assert w3.eth.chain_id == CHAIN_ID
        assert len(w3.eth.get_code(chain.factory_address)) > 1000


def test_banner_then_clean_stop_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devchain", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line.rstrip("\n"))
            if line.lstrip().startswith("(9)"):
                break
        assert banner[0] == f"devchain: chain id {CHAIN_ID}"
        assert banner[1].startswith("RPC URL: http://127.0.0.1:")
        assert banner[2] == f"ChannelFactory: {FACTORY_ADDRESS}"
        assert "10000 ETH each" in banner[3]
        for i, (address, key) in enumerate(ACCOUNTS):
            assert banner[4 + i] == f"  ({i}) {address} {key}"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "devchain: stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_busy_port_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"devchain: cannot listen on 127.0.0.1:{port}")
    assert len(err.strip().splitlines()) == 1


def test_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "70000"]) == 2
    assert "--port must be 0..65535" in capsys.readouterr().err
