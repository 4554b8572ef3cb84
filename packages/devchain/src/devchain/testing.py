"""Test helpers: a dev chain in-process or in a subprocess, on a free port.

    async with running_devchain() as chain:      # in-process, same event loop
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))

    with devchain_process() as chain:             # `python -m devchain` subprocess
        w3 = Web3(HTTPProvider(chain.url))

    w3 = in_process_web3()                        # no server: same JSON-RPC, no socket

Each one is a fresh chain: accounts funded, the ChannelFactory at
``chain.factory_address`` (always :data:`devchain.accounts.FACTORY_ADDRESS`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from .accounts import ACCOUNTS, CHAIN_ID, FACTORY_ADDRESS
from .chain import DevChain
from .rpc import handle_payload
from .server import DevchainServer

__all__ = [
    "DevchainHandle",
    "InProcessProvider",
    "devchain_process",
    "in_process_web3",
    "running_devchain",
]

_URL_PREFIX = "RPC URL: "


@dataclass(frozen=True, slots=True)
class DevchainHandle:
    """Where a running dev chain answers, and its fixed identity."""

    url: str
    factory_address: ChecksumAddress = FACTORY_ADDRESS
    chain_id: int = CHAIN_ID
    #: (checksummed address, 0x-prefixed private key) of the 10 funded accounts.
    accounts: tuple[tuple[ChecksumAddress, str], ...] = ACCOUNTS


@asynccontextmanager
async def running_devchain(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[DevchainHandle]:
    """Serve a fresh dev chain in this event loop (free port by default) while inside."""
    server = DevchainServer(host, port)
    try:
        await server.start()
        assert server.chain is not None
        yield DevchainHandle(url=server.url, factory_address=server.chain.factory_address)
    finally:
        await server.stop()


@contextmanager
def devchain_process(
    host: str = "127.0.0.1", port: int = 0, *, timeout: float = 60.0
) -> Iterator[DevchainHandle]:
    """Run ``python -m devchain`` as a subprocess while inside; returns once it answers.

    Blocks while the process starts (about two seconds; killed and an error
    after ``timeout``). The process is terminated (SIGTERM, then killed) on exit.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "devchain", "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        # A process that never prints its URL is killed after `timeout` seconds.
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            url = _read_url(process)
        finally:
            watchdog.cancel()
        _check_answers(url, timeout)
        yield DevchainHandle(url=url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(_URL_PREFIX):
            return line[len(_URL_PREFIX) :].strip()
    process.wait()
    raise RuntimeError(
        f"devchain exited with status {process.returncode} before serving:\n{''.join(seen)}"
    )


def _check_answers(url: str, timeout: float) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    if answer.get("result") != hex(CHAIN_ID):
        raise RuntimeError(f"devchain at {url} answered {answer!r}")


class InProcessProvider(JSONBaseProvider):
    """A web3 provider that hands each request's JSON to a DevChain in this thread."""

    def __init__(self, chain: DevChain | None = None) -> None:
        super().__init__()
        self.chain = chain if chain is not None else DevChain()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = handle_payload(self.encode_rpc_request(method, params), self.chain.call)
        assert answer is not None
        return self.decode_rpc_response(answer)

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


def in_process_web3(chain: DevChain | None = None) -> Web3:
    """A synchronous Web3 on a fresh (or the given) dev chain, without a server."""
    return Web3(InProcessProvider(chain))
