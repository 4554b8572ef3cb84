"""The Docker images and the compose stack, end to end (the seed's story).

Builds both images, starts ``docker compose --profile dev`` under its own
project name with throwaway secrets, and checks what an operator relies on:
health, service discovery (relay -> node RPC), a paid note through the stack on
the devchain service, reconnection after the node restarts, data surviving
``down`` + ``up``, non-root and hardened containers, no secret in any image
layer, image sizes. Prints image sizes and timings. Skips only when no Docker
engine answers (``docker info`` fails); run ``../shared/docker-kit/up`` first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from web3 import Web3
from web3.types import Wei

from nostr_protocol.keys import generate_secret_key, sign_event
from payment_channel.artifacts import load_artifact
from payment_channel.claim import address_of, sign_claim

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROJECT = "nostream-ilp-test"
IMAGES = {
    "nostream-ilp:latest": "docker/Dockerfile.nostream",
    "dassie-node:latest": "docker/Dockerfile.dassie",
}
CONTAINERS = (
    "nostream-ilp",
    "dassie-node",
    "nostream-db",
    "nostream-cache",
    "nostream-ilp-devchain",
)
SIZE_LIMIT = 500 * 1000 * 1000
SIZE_GOAL = 250 * 1000 * 1000
"""Our own goal, on the stand-in base image of docker-kit (198 MB)."""
# Devchain accounts (the well-known test mnemonic): 1 is the relay, 2 the paying user.
RELAY_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
USER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
FACTORY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WAIT_SECONDS = 240


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; return stdout, or fail the test with its output."""
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _engine_problem() -> str | None:
    """Why the Docker engine cannot be used here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if proc.returncode != 0:
        return f"`docker info` failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def _port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens on it locally, else an ephemeral port."""
    for candidate in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise AssertionError("no free port")


def _http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@dataclass
class Stack:
    """The running test stack: its environment, host ports and measurements."""

    env: dict[str, str]
    env_file: Path
    relay_port: int
    dassie_port: int
    chain_port: int
    rpc_token: str
    secrets: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600) -> str:
        return _run(
            "docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(self.env_file),
            "-p", PROJECT, "--profile", "dev", *args, env=self.env, timeout=timeout,
        )  # fmt: skip

    def up_and_wait(self) -> float:
        """``up -d``, then wait until every container is healthy; returns the seconds taken.

        Fails at once when a container exits, restarts or turns unhealthy.
        """
        start = time.monotonic()
        self.compose("up", "-d", "--no-build")
        deadline = start + WAIT_SECONDS
        while True:
            info = json.loads(_run("docker", "inspect", *CONTAINERS))
            states = {c["Name"].lstrip("/"): c["State"] for c in info}
            bad = {
                c["Name"]: {
                    "status": c["State"]["Status"],
                    "health": c["State"].get("Health", {}).get("Status"),
                    "restarts": c["RestartCount"],
                }
                for c in info
                if c["State"]["Status"] != "running"
                or c["State"].get("Health", {}).get("Status") == "unhealthy"
                or c["RestartCount"] > 0
            }
            assert not bad, f"containers failed: {bad}"
            if all(s.get("Health", {}).get("Status") == "healthy" for s in states.values()):
                return time.monotonic() - start
            assert time.monotonic() < deadline, f"not healthy after {WAIT_SECONDS} s: {states}"
            time.sleep(0.5)

    @property
    def relay_http(self) -> str:
        return f"http://127.0.0.1:{self.relay_port}"

    @property
    def relay_ws(self) -> str:
        return f"ws://127.0.0.1:{self.relay_port}"

    @property
    def dassie_http(self) -> str:
        return f"http://127.0.0.1:{self.dassie_port}"


def _report(config: pytest.Config, stack: Stack) -> None:
    """Print the measurements to the terminal, past pytest's output capturing."""
    lines = ["", "Docker stack measurements", f"  {'what':<48} {'value':>10}"]
    for image, size in stack.sizes.items():
        lines.append(f"  {'image size ' + image:<48} {size / 1e6:>7.0f} MB")
    for what, seconds in stack.timings.items():
        lines.append(f"  {what:<48} {seconds:>8.1f} s")
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    problem = _engine_problem()
    if problem is not None:
        print(f"skipping the Docker stack test: {problem}")
        pytest.skip(f"no Docker engine: {problem} (run ../shared/docker-kit/up)")
    workdir = Path(tempfile.mkdtemp(prefix="nostream-ilp-docker-"))
    env_file = workdir / ".env"
    values = {
        "SECRET": secrets.token_hex(32),
        "DASSIE_RPC_TOKEN": secrets.token_hex(32),
        "DB_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "SETTLEMENT_LOCAL_ENABLED": "true",
        "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": RELAY_KEY,
        "RELAY_PUBLISHED_PORT": str(_port_or_free(8008)),
        "DASSIE_PUBLISHED_PORT": str(_port_or_free(7768)),
        "DEVCHAIN_PUBLISHED_PORT": str(_port_or_free(8545)),
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    # Only the env file configures compose: nothing from this shell leaks in.
    base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST")}
    st = Stack(
        env=base_env,
        env_file=env_file,
        relay_port=int(values["RELAY_PUBLISHED_PORT"]),
        dassie_port=int(values["DASSIE_PUBLISHED_PORT"]),
        chain_port=int(values["DEVCHAIN_PUBLISHED_PORT"]),
        rpc_token=values["DASSIE_RPC_TOKEN"],
        secrets=[
            values[k] for k in ("SECRET", "DASSIE_RPC_TOKEN", "DB_PASSWORD", "REDIS_PASSWORD")
        ],
    )
    failed_before = request.session.testsfailed
    try:
        st.compose("down", "-v", "--remove-orphans")  # leftovers of an interrupted run
        for image, dockerfile in IMAGES.items():
            start = time.monotonic()
            _run("docker", "build", "-q", "-f", str(REPO / dockerfile), "-t", image, str(REPO))
            st.timings[f"build {image} (cache as found)"] = time.monotonic() - start
            size = int(_run("docker", "image", "inspect", "--format", "{{.Size}}", image))
            st.sizes[image] = size
        st.timings["compose up -> all containers healthy"] = st.up_and_wait()
        yield st
    except BaseException:
        _dump_logs(st)
        raise
    else:
        if request.session.testsfailed > failed_before:
            _dump_logs(st)
    finally:
        subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
             "-p", PROJECT, "--profile", "dev", "down", "-v", "--remove-orphans"],
            env=base_env, capture_output=True, check=False, timeout=300,
        )  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)
        _report(request.config, st)


def _dump_logs(stack: Stack) -> None:
    """Print the containers' last log lines (shown by pytest for a failure)."""
    proc = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(stack.env_file),
         "-p", PROJECT, "--profile", "dev", "logs", "--no-color", "--tail", "60"],
        capture_output=True, text=True, env=stack.env, check=False, timeout=60,
    )  # fmt: skip
    print(proc.stdout, proc.stderr)


def _connected_count() -> int:
    logs = subprocess.run(
        ["docker", "logs", "nostream-ilp"], capture_output=True, text=True, check=True
    )
    return (logs.stdout + logs.stderr).count("Connected to Dassie RPC")


# -- the tests, in the order an operator would check them -------------------------------


def test_env_example_matches_the_compose_file(tmp_path: Path) -> None:
    """Every .env.example variable is used by compose; filled in, it yields a valid config."""
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("no `docker compose` on this machine")
    example = (REPO / ".env.example").read_text()
    compose_text = COMPOSE_FILE.read_text()
    names = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, flags=re.M)
    assert len(names) > 20
    unused = [n for n in names if "${" + n + ":" not in compose_text]
    assert unused == [], f".env.example variables compose never reads: {unused}"
    env_file = tmp_path / ".env"
    filled = {"SECRET", "DASSIE_RPC_TOKEN", "DB_PASSWORD", "REDIS_PASSWORD"}
    env_file.write_text(
        re.sub(
            r"^(" + "|".join(filled) + r")=$",
            lambda m: f"{m.group(1)}={secrets.token_hex(32)}",
            example,
            flags=re.M,
        )
    )
    rendered = json.loads(
        _run(
            "docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
            "--profile", "dev", "config", "--format", "json",
        )
    )  # fmt: skip
    services = rendered["services"]
    assert set(services) == {"nostream", "dassie", "nostream-db", "nostream-cache", "devchain"}
    assert services["nostream"]["environment"]["DASSIE_RPC_URL"] == "ws://dassie:7768/trpc"
    assert (
        services["nostream"]["environment"]["DASSIE_RPC_TOKEN"]
        == services["dassie"]["environment"]["RPC_AUTH_TOKEN"]
    )
    assert services["dassie"]["environment"]["SETTLEMENT_LOCAL_RPC_URL"] == "http://devchain:8545"
    assert services["devchain"]["profiles"] == ["dev"]
    published = {
        name: {(p.get("host_ip", ""), str(p["published"])) for p in svc.get("ports", [])}
        for name, svc in services.items()
    }
    assert published["nostream"] == {("", "8008")}
    assert published["dassie"] == {("127.0.0.1", "7768")}
    assert published["devchain"] == {("127.0.0.1", "8545")}
    assert published["nostream-db"] == published["nostream-cache"] == set()
    for name in ("nostream", "dassie", "devchain"):
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]


def test_missing_secret_stops_compose_with_a_clear_message(stack: Stack) -> None:
    env_file = stack.env_file.with_name("incomplete.env")
    env_file.write_text(
        "".join(
            line + "\n"
            for line in stack.env_file.read_text().splitlines()
            if not line.startswith("DASSIE_RPC_TOKEN=")
        )
    )
    proc = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
         "-p", PROJECT + "-incomplete", "--profile", "dev", "config", "-q"],
        capture_output=True, text=True, env=stack.env, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "DASSIE_RPC_TOKEN" in proc.stderr
    assert "openssl rand -hex 32" in proc.stderr


def test_images_are_small_and_hold_no_secret(stack: Stack) -> None:
    for image in IMAGES:
        assert stack.sizes[image] < SIZE_LIMIT, f"{image} is {stack.sizes[image] / 1e6:.0f} MB"
        assert stack.sizes[image] < SIZE_GOAL, f"{image} is {stack.sizes[image] / 1e6:.0f} MB"
        history = _run("docker", "history", "--no-trunc", image)
        inspect = _run("docker", "image", "inspect", image)
        for value in [*stack.secrets, RELAY_KEY[2:], USER_KEY[2:]]:
            assert value not in history
            assert value not in inspect
        # No secret-looking variable is given a value at build time either.
        leaked = re.findall(
            r"\b\w*(?:SECRET|TOKEN|PASSWORD|PRIVATE_KEY)\w*=[^\s\"]+", history + inspect
        )
        assert leaked == [], leaked
        config = json.loads(inspect)[0]["Config"]
        assert config["User"] == "10001:10001"
        assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]
        assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    # No compilers, build venv or pip in the runtime image.
    out = _run(
        "docker", "run", "--rm", "--entrypoint", "sh", "dassie-node:latest", "-c",
        "ls /opt; command -v gcc strip || true; ls /opt/venv/bin",
    )  # fmt: skip
    assert "buildenv" not in out
    assert "/strip" not in out and "/gcc" not in out
    assert "pip" not in out.split()


def test_health_endpoints_from_the_host(stack: Stack) -> None:
    status, body = _http_get(f"{stack.relay_http}/health")
    assert status == 200, body
    assert body["status"] == "healthy", body
    assert body["checks"]["dassie_rpc"]["status"] == "ok", body
    assert body["checks"]["database"]["status"] == "ok", body
    assert body["checks"]["redis"]["status"] == "ok", body
    status, body = _http_get(f"{stack.dassie_http}/health")
    assert status == 200, body
    assert body["status"] == "healthy", body


def test_containers_are_hardened_and_not_root(stack: Stack) -> None:
    for name in ("nostream-ilp", "dassie-node", "nostream-ilp-devchain"):
        assert _run("docker", "exec", name, "id", "-u").strip() != "0"
        host = json.loads(_run("docker", "inspect", name))[0]["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["Memory"] > 0 and host["PidsLimit"] > 0
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
    ports = json.loads(_run("docker", "inspect", "dassie-node"))[0]["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for b in ports["7768/tcp"]} == {"127.0.0.1"}
    assert _connected_count() >= 1
    # The cache refuses clients without the password.
    noauth = _run("docker", "exec", "-e", "REDISCLI_AUTH=", "nostream-cache", "redis-cli", "ping")
    assert "NOAUTH" in noauth, noauth


def _open_channel(stack: Stack, amount: int) -> bytes:
    """Open a native-coin channel from the user to the relay on the devchain service."""
    w3 = Web3(
        Web3.HTTPProvider(f"http://127.0.0.1:{stack.chain_port}", request_kwargs={"timeout": 30})
    )
    assert w3.eth.chain_id == 31337
    user = Account.from_key(USER_KEY)
    relay = address_of(bytes.fromhex(RELAY_KEY[2:]))
    factory = w3.eth.contract(
        address=Web3.to_checksum_address(FACTORY), abi=load_artifact("ChannelFactory").abi
    )
    expiration = int(time.time()) + 7 * 24 * 3600
    tx = factory.functions.openChannel(
        "0x0000000000000000000000000000000000000000", relay, amount, expiration
    ).build_transaction(
        {
            "from": user.address,
            "value": Wei(amount),
            "nonce": w3.eth.get_transaction_count(user.address),
            "chainId": 31337,
        }
    )
    signed = user.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction), timeout=60
    )
    assert receipt["status"] == 1
    (opened,) = factory.events.ChannelOpened().process_receipt(receipt)
    return bytes(opened["args"]["channelId"])


async def _send_event(ws: aiohttp.ClientWebSocketResponse, event: dict[str, Any]) -> list[Any]:
    await ws.send_str(json.dumps(["EVENT", event]))
    while True:
        msg: list[Any] = json.loads(await ws.receive_str(timeout=30))
        if msg[0] == "OK" and msg[1] == event["id"]:
            return msg


async def _fetch(ws: aiohttp.ClientWebSocketResponse, event_id: str) -> list[dict[str, Any]]:
    sub = "q" + secrets.token_hex(4)
    await ws.send_str(json.dumps(["REQ", sub, {"ids": [event_id]}]))
    found = []
    while True:
        msg = json.loads(await ws.receive_str(timeout=30))
        if msg[0] == "EVENT" and msg[1] == sub:
            found.append(msg[2])
        elif msg[0] == "EOSE" and msg[1] == sub:
            await ws.send_str(json.dumps(["CLOSE", sub]))
            return found


async def _rpc(stack: Stack, method: str, params: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"ws://127.0.0.1:{stack.dassie_port}/trpc",
            headers={"Authorization": f"Bearer {stack.rpc_token}"},
        ) as ws,
    ):
        await ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        )
        reply = json.loads(await ws.receive_str(timeout=30))
    assert "result" in reply, reply
    return reply["result"]


async def test_paid_note_through_the_stack_survives_down_and_up(stack: Stack) -> None:
    info = await _rpc(stack, "node.getInfo", {})
    (local,) = [c for c in info["chains"] if c["chainId"] == 31337]
    assert local["factory"].lower() == FACTORY.lower()

    status, nip11 = _http_get(stack.relay_http, {"Accept": "application/nostr+json"})
    assert status == 200
    assert nip11["limitation"]["payment_required"] is True
    price = max(int(fee["amount"]) for fee in nip11["fees"]["publication"])
    channel_id = _open_channel(stack, amount=10 * price)

    sk = generate_secret_key()
    signature = sign_claim(bytes.fromhex(USER_KEY[2:]), channel_id, price, 1)
    tag = [
        "payment",
        "ilp",
        "0x" + channel_id.hex(),
        str(price),
        "1",
        "0x" + signature.hex(),
        "ETH",
    ]
    paid = sign_event(sk, kind=1, content="paid through docker", tags=[tag]).to_dict()
    unpaid = sign_event(sk, kind=1, content="not paid").to_dict()

    async with aiohttp.ClientSession() as session, session.ws_connect(stack.relay_ws) as ws:
        ok = await _send_event(ws, unpaid)
        assert ok[2] is False and ok[3].startswith("restricted: payment required"), ok
        ok = await _send_event(ws, paid)
        assert ok[2] is True, ok
        assert [e["id"] for e in await _fetch(ws, paid["id"])] == [paid["id"]]
        assert await _fetch(ws, unpaid["id"]) == []

    state = await _rpc(stack, "payment.getChannelState", {"channelId": "0x" + channel_id.hex()})
    assert int(state["bestClaim"]["claimAmount"]) == price
    ledger = (await _rpc(stack, "ledger.getAccounts", {}))["accounts"]
    assert any(str(price) in (a["balance"], a["creditsPosted"]) for a in ledger), ledger

    # Volumes keep the relay's events and the node's ledger across the operator's stop
    # and start scripts (the devchain is in memory: it starts afresh, so only the
    # ledger is compared).
    scripts_env = {**stack.env, "COMPOSE_PROJECT_NAME": PROJECT, "ENV_FILE": str(stack.env_file)}
    _run(str(REPO / "scripts/docker-stop.sh"), env=scripts_env)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert _run("docker", "ps", "-a", "-q", "--filter", label).strip() == ""
    start = time.monotonic()
    out = _run(str(REPO / "scripts/docker-start.sh"), "--dev", env=scripts_env)
    stack.timings["docker-start.sh again (volumes kept) -> healthy"] = time.monotonic() - start
    assert f"ws://localhost:{stack.relay_port}" in out, out
    assert out.count(" healthy\n") == len(CONTAINERS), out
    async with aiohttp.ClientSession() as session, session.ws_connect(stack.relay_ws) as ws:
        assert [e["id"] for e in await _fetch(ws, paid["id"])] == [paid["id"]]
    assert (await _rpc(stack, "ledger.getAccounts", {}))["accounts"] == ledger


def test_relay_reconnects_after_the_node_restarts(stack: Stack) -> None:
    before = _connected_count()
    assert before >= 1
    start = time.monotonic()
    _run("docker", "restart", "dassie-node")
    deadline = time.monotonic() + WAIT_SECONDS
    # Poll the two observable signals until both say "reconnected" (or give up).
    while True:
        status, body = _http_get(f"{stack.relay_http}/health")
        if (
            _connected_count() > before
            and status == 200
            and body["checks"]["dassie_rpc"]["status"] == "ok"
        ):
            break
        assert time.monotonic() < deadline, f"relay did not reconnect: {body}"
        time.sleep(0.5)
    stack.timings["dassie restart -> relay reconnected"] = time.monotonic() - start


def test_source_only_change_rebuilds_from_the_layer_cache(stack: Stack) -> None:
    """A changed source file reuses the dependency layer (copy of the context; repo untouched)."""
    with tempfile.TemporaryDirectory(prefix="nostream-ilp-ctx-") as tmp:
        ctx = Path(tmp)
        for name in ("docker", "requirements", "packages"):
            shutil.copytree(
                REPO / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        shutil.copy2(REPO / ".dockerignore", ctx / ".dockerignore")
        init = ctx / "packages" / "nostream" / "src" / "nostream" / "__init__.py"
        # A marker unique to this run: a fixed one would be in the layer cache from the last run.
        init.write_text(init.read_text() + f"\n# changed by test_docker_stack {uuid.uuid4()}\n")
        tag = "nostream-ilp:rebuild-test"
        start = time.monotonic()
        out = _run(
            "docker", "build", "-f", str(ctx / "docker/Dockerfile.nostream"), "-t", tag, str(ctx)
        )
        stack.timings["rebuild nostream after a source-only change"] = time.monotonic() - start
        _run("docker", "rmi", tag)
    steps = re.split(r"^Step \d+/\d+ : ", out, flags=re.M)
    lock_step = next(s for s in steps if s.startswith("RUN") and "--require-hashes --no-deps" in s)
    source_step = next(s for s in steps if s.startswith("RUN") and "pip wheel" in s)
    assert "Using cache" in lock_step, "the dependency layer was rebuilt for a source change"
    assert "Using cache" not in source_step
