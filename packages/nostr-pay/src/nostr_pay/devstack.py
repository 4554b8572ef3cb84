"""The local development stack: dev chain, Dassie node and relay, on this machine.

``python -m nostr_pay.devstack`` (what ``scripts/run`` runs) starts the three as
child processes, each in its own process group with its log under
``<root>/logs/``, waits until each is healthy, prints the URLs, and on one
Ctrl-C (or SIGTERM) stops them in reverse order. :class:`DevStack` is also what
the integration tests use, on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RELAY_ACCOUNT = 9  # the dev-chain account the node settles from (the relay's address)


class StackError(Exception):
    """A service did not come up; the message says which and shows its log's tail."""


@dataclass
class StackConfig:
    root: Path
    host: str = "127.0.0.1"
    chain_port: int = 8545
    node_port: int = 7768
    relay_port: int = 8008
    relay_env: dict[str, str] = field(default_factory=dict)
    """Extra relay environment (database, Redis, pricing)."""
    node_env: dict[str, str] = field(default_factory=dict)
    relay_settings: dict[str, Any] | None = None
    """Written as the relay's settings.yaml when given (else nostream writes its default)."""

    @property
    def chain_url(self) -> str:
        return f"http://{self.host}:{self.chain_port}"

    @property
    def node_rpc_url(self) -> str:
        return f"ws://{self.host}:{self.node_port}/trpc"

    @property
    def node_http(self) -> str:
        return f"http://{self.host}:{self.node_port}"

    @property
    def relay_url(self) -> str:
        return f"ws://{self.host}:{self.relay_port}"

    @property
    def relay_http(self) -> str:
        return f"http://{self.host}:{self.relay_port}"


def _secret_file(path: Path, nbytes: int) -> str:
    """A random hex secret kept in ``path`` (created once, mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _command(script: str, module: str, *args: str) -> list[str]:
    """The venv's console script when installed, else ``python -m module``."""
    exe = Path(sys.executable).parent / script
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", module, *args]


def http_json(url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, JSON body) of a GET (or a POST when ``body`` is given); status 0 if unreachable."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


class Service:
    """One child process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for tests)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class DevStack:
    """Dev chain + Dassie node + relay, started and stopped together."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        root = config.root
        root.mkdir(parents=True, exist_ok=True)
        self.rpc_token = _secret_file(root / "rpc-token", 24)
        relay_secret = _secret_file(root / "relay-secret", 32)
        from devchain.accounts import ACCOUNTS, FACTORY_ADDRESS

        self.relay_address, relay_key = ACCOUNTS[RELAY_ACCOUNT]
        self.factory = FACTORY_ADDRESS
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "REDIS_"))}
        base["PYTHONUNBUFFERED"] = "1"
        c = config
        self.chain = Service(
            "devchain",
            _command(
                "dassie", "dassie.cli", "devchain", "--host", c.host, "--port", str(c.chain_port)
            ),
            base,
            root / "logs" / "devchain.log",
        )
        node_env = {
            **base,
            "NODE_ENV": "development",
            "RPC_AUTH_TOKEN": self.rpc_token,
            "LEDGER_DB_PATH": str(root / "dassie" / "ledger.db"),
            "DASSIE_HOST": c.host,
            "DASSIE_PORT": str(c.node_port),
            "SETTLEMENT_LOCAL_ENABLED": "true",
            "SETTLEMENT_LOCAL_RPC_URL": c.chain_url,
            "SETTLEMENT_LOCAL_FACTORY_ADDRESS": FACTORY_ADDRESS,
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": relay_key,
            # The dev chain mines a block per transaction and answers in microseconds:
            # follow it every second, so a channel opened is known (from its log) before
            # its first claim needs a lookup.
            "SETTLEMENT_POLL_INTERVAL": "1",
            **c.node_env,
        }
        (root / "dassie").mkdir(exist_ok=True)
        if c.relay_settings is not None:
            import yaml

            (root / "nostream").mkdir(exist_ok=True)
            (root / "nostream" / "settings.yaml").write_text(yaml.safe_dump(c.relay_settings))
        self.node = Service(
            "dassie",
            _command("dassie", "dassie.cli", "serve"),
            node_env,
            root / "logs" / "dassie.log",
        )
        relay_env = {
            **base,
            "RELAY_HOST": c.host,
            "RELAY_PORT": str(c.relay_port),
            "SECRET": relay_secret,
            "NOSTR_CONFIG_DIR": str(root / "nostream"),
            "NOSTR_DATA_DIR": str(root / "nostream"),
            "DASSIE_RPC_URL": c.node_rpc_url,
            "DASSIE_RPC_TOKEN": self.rpc_token,
            **c.relay_env,
        }
        self.relay = Service(
            "nostream",
            _command("nostream", "nostream.cli", "serve"),
            relay_env,
            root / "logs" / "nostream.log",
        )

    # -- health -------------------------------------------------------------------------

    def chain_ready(self) -> bool:
        status, body = http_json(
            self.config.chain_url,
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        )
        return status == 200 and isinstance(body, dict) and body.get("result") == hex(31337)

    def node_ready(self) -> bool:
        return http_json(self.config.node_http + "/health")[0] == 200

    def relay_health(self) -> tuple[int, Any]:
        return http_json(self.config.relay_http + "/health")

    def relay_ready(self) -> bool:
        status, body = self.relay_health()
        return status == 200 and isinstance(body, dict) and body.get("status") == "healthy"

    def wait(self, service: Service, ready: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not service.running:
                raise StackError(f"{service.name} exited while starting:\n{service.tail()}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"{service.name} not healthy after {timeout:g}s:\n{service.tail()}"
                )
            time.sleep(0.1)

    # -- lifecycle ----------------------------------------------------------------------

    def start_chain(self) -> None:
        self.chain.start()
        self.wait(self.chain, self.chain_ready)

    def start_node(self) -> None:
        self.node.start()
        self.wait(self.node, self.node_ready)

    def start_relay(self) -> None:
        self.relay.start()
        self.wait(self.relay, self.relay_ready)

    def start(self) -> None:
        try:
            self.start_chain()
            self.start_node()
            self.start_relay()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for service in (self.relay, self.node, self.chain):
            service.stop()

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def services(self) -> tuple[Service, ...]:
        return (self.chain, self.node, self.relay)


def unlimited_settings() -> dict[str, Any]:
    """The relay's default settings without rate limits (for tests and benchmarks)."""
    import yaml

    from nostream.config import default_settings_text

    settings: dict[str, Any] = yaml.safe_load(default_settings_text())
    settings["limits"]["event"]["rateLimits"] = []
    settings["limits"]["message"]["rateLimits"] = []
    return settings


def _port(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StackError(f"{name}: expected a TCP port, got {text!r}")
    return int(text)


def main() -> int:
    root = Path(os.environ.get("RUN_DIR", ".run")).resolve()
    try:
        config = StackConfig(
            root=root,
            chain_port=_port("DEVCHAIN_PORT", 8545),
            node_port=_port("DASSIE_PORT", 7768),
            relay_port=_port("RELAY_PORT", 8008),
        )
    except StackError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The dev chain starts empty every time, so the node's ledger of its channels goes too.
    shutil.rmtree(root / "dassie", ignore_errors=True)
    stack = DevStack(config)
    print(f"Starting devchain, dassie and nostream (data and logs in {root}) ...", flush=True)
    try:
        for name, start in (
            ("devchain", stack.start_chain),
            ("dassie", stack.start_node),
            ("nostream", stack.start_relay),
        ):
            if stopping:
                break
            start()
            print(f"  {name} is healthy", flush=True)
    except StackError as exc:
        print(f"run: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    if not stopping:
        print(
            f"\nDev chain : {config.chain_url} (chain id 31337, factory {stack.factory})\n"
            f"Dassie    : {config.node_rpc_url} (RPC token in {root / 'rpc-token'}), "
            f"health {config.node_http}/health\n"
            f"Relay     : {config.relay_url} (NIP-11 and /health at {config.relay_http}), "
            f"paid to {stack.relay_address}\n\n"
            f"Quick start: .venv/bin/nostr-pay --dev --relay {config.relay_url} "
            f'--rpc-url {config.chain_url} publish "hello, paid world"\n'
            "Press Ctrl-C to stop all three.",
            flush=True,
        )
    code = 0
    while not stopping:
        dead = [s.name for s in stack.services() if not s.running]
        if dead:
            print(f"run: {', '.join(dead)} exited; stopping the others", file=sys.stderr)
            code = 1
            break
        time.sleep(0.2)
    print("Stopping nostream, dassie and devchain ...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
