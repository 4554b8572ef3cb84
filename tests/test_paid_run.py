"""The run command's launcher: three services up and healthy, one SIGINT stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from nostr_pay.devstack import http_json
from tests.support import free_port

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_one_interrupt_stops_chain_node_and_relay(tmp_path: Path) -> None:
    ports = {"DEVCHAIN_PORT": free_port(), "DASSIE_PORT": free_port(), "RELAY_PORT": free_port()}
    env = {**os.environ, "RUN_DIR": str(tmp_path / "run"), **{k: str(v) for k, v in ports.items()}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nostr_pay.devstack",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any("Press Ctrl-C" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "launcher exited early:\n" + "".join(seen)
                seen.append(line)
        banner = "".join(seen)
        assert f"ws://127.0.0.1:{ports['RELAY_PORT']}" in banner and "nostr-pay --dev" in banner
        code, health = http_json(f"http://127.0.0.1:{ports['RELAY_PORT']}/health")
        assert code == 200 and health["status"] == "healthy"
        assert health["checks"]["dassie_rpc"]["status"] == "ok"
        children = [
            int(pid)
            for pid in (await asyncio.to_thread(
                lambda: os.popen(f"pgrep -P {proc.pid}").read()
            )).split()
        ]  # fmt: skip
        assert len(children) == 3
        # What one Ctrl-C in the terminal delivers: SIGINT to the launcher's process group.
        os.killpg(proc.pid, signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0, rest
        assert "Stopped." in rest
        assert not [pid for pid in children if alive(pid)]
        assert http_json(f"http://127.0.0.1:{ports['RELAY_PORT']}/health")[0] == 0
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
