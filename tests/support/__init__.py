"""Helpers shared by the test-suites: free ports and throwaway database servers.

Import as ``from tests.support import free_port`` (the root ``conftest.py`` puts
the repository root on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "free_port",
    "free_ports",
]

PG_BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = "install them with: apt-get install -y postgresql-15 redis-server"


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started (binaries missing or start failed)."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free TCP ports (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"{what} did not become ready within {timeout:.0f}s")
        time.sleep(0.05)


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory (fsync off).

    When the tests run as root the cluster runs as the ``postgres`` system user.
    ``stop()``/``start()`` may be called again to simulate a server restart; the
    port stays the same.
    """

    def __init__(self, bin_dir: Path = PG_BIN) -> None:
        self.bin_dir = bin_dir
        for tool in ("initdb", "postgres", "pg_isready"):
            if not (bin_dir / tool).exists():
                raise ServerUnavailable(
                    f"PostgreSQL 15 binaries not found in {bin_dir} (no {tool}); {INSTALL_HINT}, "
                    "or set TEST_POSTGRES_DSN to an existing server"
                )
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            try:
                pwd.getpwnam(self._user)
            except KeyError as exc:
                raise ServerUnavailable(
                    "running as root but there is no 'postgres' user to run the server as; "
                    + INSTALL_HINT
                ) from exc
        self.root = Path(tempfile.mkdtemp(prefix="test-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.sockets.mkdir()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        entry = pwd.getpwnam(self._user)
        return {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": str(self.root), "USER": self._user},
        }

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, cwd=self.root, **self._popen_kwargs())
        if result.returncode != 0:
            raise ServerUnavailable(
                f"{argv[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    @property
    def admin_dsn(self) -> str:
        """DSN of the ``postgres`` maintenance database."""
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        """DSN (TCP, trust auth, user ``postgres``) of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
        )
        return result.returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "wal_level=minimal",
                "-c",
                "max_wal_senders=0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            **self._popen_kwargs(),
        )
        log.close()
        try:
            _wait_for(self._ready, timeout, "postgres", self.proc)
        except ServerUnavailable as exc:
            tail = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise ServerUnavailable(f"{exc}; log:\n{tail}") from exc

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions are disconnected."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A throwaway ``redis-server`` on a free port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable(
                f"redis-server not found on PATH; {INSTALL_HINT}, or set TEST_REDIS_URL"
            )
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="test-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers PING."""
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--databases",
                "16",
                "--dir",
                str(self.root),
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        _wait_for(self._ready, timeout, "redis-server", self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
