"""The input side of the command line's conventions (issue 18): `sweep --count` alone, check
selection, target lists and nmap XML, the trust failure in words, waiver warnings.

Real peers on 127.165.0.0/16: nginx serving HTTPS with a certificate of a private CA, and
mosquitto accepting anonymous MQTT in clear text.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records
from daemons import Certificate, issue, make_ca, mosquitto, nginx

from probe.record.schema import validate_record

WEB = "127.165.0.1"
BROKER = "127.165.0.2"
FAST = ("--timeout", "2", "--budget", "60", "--exclude-ports", "2024", "--no-udp",
        "--ports", "443,1883", "-p", "iso27400-6.2")


def iotprobe(*args: str, stdin: str | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=300, input=stdin, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"},
                          stdin=None if stdin is not None else subprocess.DEVNULL)


@dataclass(frozen=True)
class Peers:
    ca: Certificate


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    tmp = tmp_path_factory.mktemp("peers")
    ca, issuer = make_ca(tmp)
    cert, _ = issue(tmp, "web", issuer, names=[WEB])
    with nginx(tmp, WEB, 443, cert), mosquitto(tmp, BROKER, 1883):
        yield Peers(ca)


def records(outdir: Path) -> dict[str, dict[str, Any]]:
    """The records of a scan, each validated against the schema."""
    found = load_records(outdir)
    for record in found.values():
        validate_record(record)
    return found


def rows(record: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [r for r in record["results"] if r["check"] == check]


# --------------------------------------------------------------------------------------------
# 1. sweep --count N without --every
# --------------------------------------------------------------------------------------------


def test_count_without_every_runs_that_many_sweeps_back_to_back(peers: Peers,
                                                                 tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"devices:\n  - address: {BROKER}\n")
    store = tmp_path / "fleet.sqlite"
    run = iotprobe("sweep", "-i", str(inventory), "--store", str(store), "--count", "2",
                   *FAST, "-q")
    assert run.returncode == 1, run.stderr
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        sweeps = list(conn.execute("SELECT id, state FROM sweeps ORDER BY id"))
    finally:
        conn.close()
    assert sweeps == [(1, "finished"), (2, "finished")]
    assert "next sweep at" not in run.stderr


# --------------------------------------------------------------------------------------------
# 5. tls.certificate-trust in words
# --------------------------------------------------------------------------------------------


def test_trust_failure_says_what_was_checked_and_what_to_do(peers: Peers,
                                                            tmp_path: Path) -> None:
    plain = iotprobe("scan", WEB, "-o", str(tmp_path / "plain"), *FAST, "-q")
    assert plain.returncode == 1, plain.stderr
    (trust,) = rows(records(tmp_path / "plain")[WEB], "tls.certificate-trust")
    assert trust["status"] == "fail"
    assert trust["summary"] == (
        "tcp/443: the chain of the certificate CN=web does not lead to a trusted root; "
        "trust anchors: the system store; pass --trust-anchor for a fleet CA")
    (served,) = trust["evidence"]["certificates"]
    assert served["validation_error"].startswith("validation failed")
    anchored = iotprobe("scan", WEB, "-o", str(tmp_path / "anchored"), *FAST, "-q",
                        "--trust-anchor", str(peers.ca.cert))
    (trust,) = rows(records(tmp_path / "anchored")[WEB], "tls.certificate-trust")
    assert trust["status"] == "pass", anchored.stderr
