"""Settings from settings.yaml and the environment; bad values give one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nostream.config import ConfigError, load_settings, settings_from


def test_defaults_write_settings_yaml(tmp_path: Path) -> None:
    settings = load_settings({"NOSTR_CONFIG_DIR": str(tmp_path)})
    assert (tmp_path / "settings.yaml").exists()
    assert settings.port == 8008 and settings.host == "0.0.0.0"
    assert settings.sqlite_path == tmp_path / "nostream.sqlite3"
    assert settings.database is None and settings.redis is None
    assert not settings.dassie.payments_enabled
    assert settings.events.rate_limits  # the default file has nostream-like limits
    assert settings.payments_raw == {}


def test_env_overrides(tmp_path: Path) -> None:
    env = {
        "NOSTR_CONFIG_DIR": str(tmp_path),
        "NOSTR_DATA_DIR": str(tmp_path / "data"),
        "RELAY_PORT": "9000",
        "RELAY_HOST": "127.0.0.1",
        "DB_HOST": "db",
        "DB_PASSWORD": "p@ss",
        "REDIS_HOST": "cache",
        "REDIS_PASSWORD": "r",
        "DASSIE_RPC_URL": "ws://dassie:7768/trpc",
        "DASSIE_RPC_TOKEN": "t" * 32,
        "DASSIE_RPC_TIMEOUT_MS": "250",
        "SECRET": "s",
    }
    s = load_settings(env)
    assert (s.host, s.port, s.secret) == ("127.0.0.1", 9000, "s")
    assert s.sqlite_path == tmp_path / "data" / "nostream.sqlite3"
    assert s.database is not None and s.database.dsn == (
        "postgresql://nostr_ts_relay:p%40ss@db:5432/nostr_ts_relay"
    )
    assert s.redis is not None and s.redis.url == "redis://:r@cache:6379/0"
    assert s.dassie.payments_enabled and s.dassie.rpc_timeout_ms == 250
    off = load_settings({**env, "PAYMENTS_ENABLED": "false"})
    assert not off.dassie.payments_enabled


@pytest.mark.parametrize(
    ("env", "tree", "needle"),
    [
        ({"RELAY_PORT": "eighty"}, {}, "RELAY_PORT"),
        ({"RELAY_PORT": "70000"}, {}, "RELAY_PORT"),
        ({"DB_HOST": "db", "DB_PORT": "x"}, {}, "DB_PORT"),
        ({"DASSIE_RPC_URL": "http://x"}, {}, "DASSIE_RPC_URL"),
        ({"DASSIE_RPC_URL": "ws://x", "PAYMENTS_ENABLED": "maybe"}, {}, "PAYMENTS_ENABLED"),
        ({"DASSIE_RPC_TIMEOUT_MS": "-1"}, {}, "DASSIE_RPC_TIMEOUT_MS"),
        ({}, {"limits": {"client": {"subscription": {"maxLimit": "many"}}}}, "maxLimit"),
        ({}, {"limits": {"event": {"kind": {"blacklist": ["x"]}}}}, "kind.blacklist"),
        ({}, {"limits": {"event": {"rateLimits": [{"rate": 0, "period": 1}]}}}, "rateLimits[0]"),
        ({}, {"network": {"maxPayloadSize": 10}}, "maxPayloadSize"),
        ({}, {"payments": [1]}, "payments"),
        ({}, {"nip42": {"authRequired": "yes"}}, "authRequired"),
    ],
)
def test_bad_values_name_the_setting(env, tree, needle) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tree, env)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("limits: [unclosed\n")
    with pytest.raises(ConfigError, match=r"settings\.yaml: not valid YAML"):
        load_settings({"NOSTR_CONFIG_DIR": str(tmp_path)})


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "REDIS_", "DASSIE"))}
    env.update({"NOSTR_CONFIG_DIR": str(tmp_path), "RELAY_HOST": "127.0.0.1", **extra})
    return env


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nostream.cli", "serve"],
        env=_cli_env(tmp_path, RELAY_PORT="nope"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nostream: configuration error: RELAY_PORT must be an integer, got 'nope'"
    ]


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nostream.cli", "serve"],
        env=_cli_env(tmp_path, RELAY_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                break
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert b'"healthy"' in conn.recv(4096) + conn.recv(4096)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "nostream stopped" in out
        assert (tmp_path / "nostream.sqlite3").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "nostream.cli", "serve"],
            env=_cli_env(tmp_path, RELAY_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nostream: cannot start:")
