"""A real Redis server for the tests: `redis-server` started as a child process on 127.0.0.1 and
a free port, in a fresh directory, without persistence, stopped by PID. Debian's
`redis-server` package provides it; without it the tests that need it are skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def _free_port() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port != 2024:
            return port
    raise RuntimeError("no free port")


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: Debian package redis-server")
    root = Path(tempfile.mkdtemp(prefix="iotprobe-redis-"))
    port = _free_port()
    log_path = root / "log"
    server: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [binary, "--bind", HOST, "--port", str(port), "--dir", str(root),
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--protected-mode", "yes", "--logfile", ""],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
        deadline = time.monotonic() + 30
        while not _pong(port):
            if server.poll() is not None or time.monotonic() > deadline:
                text = log_path.read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start:\n{text}")
            time.sleep(0.05)
        yield RedisServer(port)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
