"""A real PostgreSQL server for the tests: initdb into a fresh directory, `postgres` started as
a child process on 127.0.0.1 (or the loopback address a test is given) and a free port, stopped
by PID. Debian's `postgresql` package provides the binaries; without them the tests that need
the server are skipped.

As root, initdb and postgres refuse to run, so both run as the `postgres` system user, in a
directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

PASSWORD = "pg-Pa55-never-printed"
USER = "iotprobe"


def _binaries() -> tuple[str, str] | None:
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        initdb, postgres = Path(directory, "initdb"), Path(directory, "postgres")
        if initdb.exists() and postgres.exists():
            return str(initdb), str(postgres)
    initdb_path, postgres_path = shutil.which("initdb"), shutil.which("postgres")
    if initdb_path and postgres_path:
        return initdb_path, postgres_path
    return None


def _free_port(host: str = "127.0.0.1") -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port != 2024:
            return port
    raise RuntimeError("no free port")


class PostgresServer:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@contextmanager
def postgres_server(host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    binaries = _binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed: "
                    "Debian package postgresql")
    initdb, postgres = binaries
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="iotprobe-pg-"))
    run_as: dict[str, object] = {}
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    server: subprocess.Popen[bytes] | None = None
    log_path = root / "log"
    try:
        subprocess.run([initdb, "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync",
                        "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=120, cwd=root, **run_as)
        port = _free_port(host)
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [postgres, "-D", str(data), "-k", str(root), "-h", host, "-p",
                 str(port), "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=50"],
                stdout=subprocess.DEVNULL, stderr=log, cwd=root, **run_as)
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(host=host, port=port, user=USER, password=PASSWORD,
                                dbname="postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    text = log_path.read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start:\n{text}") from None
                time.sleep(0.1)
        yield PostgresServer(port, host)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # fast shutdown: ends the clients' sessions
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
