"""The COAP peers of the interoperability matrix (see `interop`): libcoap (plain, and DTLS with
a PSK over OpenSSL and over GnuTLS), aiocoap (plain, and DTLS over tinydtls) and node-coap, each
read-only or writable.

The scans are not intrusive, so `coap.unauthenticated-write` is `skipped` here; the write
verdicts on these servers are held in `tests/test_coap_peers.py`, which writes for real.

The reference tool is libcoap's `coap-client` (`-v 7` logs the size of every datagram): it GETs
`/.well-known/core` and each local resource the document lists over plain CoAP, which decides
`coap.cleartext` (content served) and `coap.amplification` (the bytes of a request's first
answer against the request's), and GETs `/.well-known/core` over `coaps://` with the peer's PSK,
and a DTLS 1.0 handshake with `openssl s_client -dtls1` and the same PSK, which decide
`coap.dtls` (DTLS spoken, and DTLS 1.0 refused).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from daemons import bound, start

from interop import (
    REPO,
    Peer,
    Protocol,
    Reading,
    Setup,
    debian_version,
    npm_version,
    pypi_version,
)
from probe.model import Status

PORT = 5683
HERE = Path(__file__).resolve().parent
NODE = REPO / "tests" / "interop" / "node"
IDENTITY, KEY = "iotprobe-matrix", "matrix-psk-key"  # tinydtls takes keys up to 16 bytes
MAX_AMPLIFICATION = 10.0  # coap.amplification's default
MAX_READS = 8
CLIENT_TIMEOUT = 60.0

FAIL, PASS, SKIPPED = Status.FAIL, Status.PASS, Status.SKIPPED


@contextlib.contextmanager
def _libcoap(binary: str, tmp: Path, address: str) -> Iterator[Setup]:
    """libcoap's example server (resources /, /time, /async, /example_data, writable by
    anyone); the TLS builds serve DTLS with the PSK on PORT + 1 as well."""
    argv = [binary, "-A", address, "-p", str(PORT)]
    ports = [(PORT, "udp")]
    if binary != "coap-server-notls":
        argv += ["-k", KEY]  # libcoap's server takes any identity with this key
        ports.append((PORT + 1, "udp"))
    with start("coap-server", argv, tmp, address, ports):
        yield Setup()


def libcoap(binary: str) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    return lambda tmp, address: _libcoap(binary, tmp, address)


@contextlib.contextmanager
def _aiocoap(mode: str, dtls: bool, tmp: Path, address: str) -> Iterator[Setup]:
    argv = [sys.executable, str(HERE / "coap" / "aiocoap_server.py"), address, str(PORT), mode]
    if dtls:
        argv += [IDENTITY, KEY]
    # aiocoap binds plain CoAP with an IPv6 socket (the address v4-mapped), tinydtls with IPv4.
    with start("aiocoap", argv, tmp, f"::ffff:{address}", [(PORT, "udp")]) as daemon:
        if dtls:
            daemon.wait_until(lambda: bound(address, PORT + 1, "udp"), "bound DTLS")
        yield Setup()


def aiocoap(mode: str, *, dtls: bool = False) -> Callable[
        [Path, str], contextlib.AbstractContextManager[Setup]]:
    return lambda tmp, address: _aiocoap(mode, dtls, tmp, address)


@contextlib.contextmanager
def _node_coap(mode: str, tmp: Path, address: str) -> Iterator[Setup]:
    argv = ["node", str(HERE / "coap" / "node_coap_server.js"), address, str(PORT), mode]
    env = {**os.environ, "NODE_PATH": str(NODE / "node_modules")}
    with start("node-coap", argv, tmp, address, [(PORT, "udp")], env=env):
        yield Setup()


def node_coap(mode: str) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    return lambda tmp, address: _node_coap(mode, tmp, address)


def aiocoap_dtls_version() -> str:
    return f"{pypi_version('aiocoap')()} + DTLSSocket {pypi_version('DTLSSocket')()}"


# --- the reference: coap-client -------------------------------------------------------------

_SENT = re.compile(r": sent (\d+) bytes")
_RECEIVED = re.compile(r": received (\d+) bytes")
_PDU = re.compile(r"^v:1 t:(CON|NON|ACK|RST) c:(\S+) ", re.MULTILINE)
_LINK = re.compile(r"<(/[^>]*)>")


def coap_client(binary: str, uri: str, *extra: str) -> str:
    """coap-client's debug log of one GET (`-B 3`: it gives up after three seconds)."""
    argv = [binary, "-m", "get", uri, "-B", "3", "-v", "7", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    return done.stdout + done.stderr


def _first_exchange(log: str) -> tuple[int, int, str | None]:
    """(bytes of the first request, bytes received before the next request, the first
    response code) from coap-client's log."""
    sent = received = 0
    for line in log.splitlines():
        if (went := _SENT.search(line)) is not None:
            if sent:
                break
            sent = int(went.group(1))
        elif (came := _RECEIVED.search(line)) is not None and sent:
            received += int(came.group(1))
    codes = [code for kind, code in _PDU.findall(log) if kind in ("ACK", "CON", "NON")
             and code not in ("GET", "0.00")]
    return sent, received, codes[0] if codes else None


def _resources(log: str) -> list[str]:
    payload = log.partition("application/link-format")[2].partition(" :: ")[2]
    found = [target for target in _LINK.findall(payload.partition("\n")[0])
             if target != "/.well-known/core"]
    return list(dict.fromkeys(found))[:MAX_READS]


def read_plain(address: str) -> dict[str, Reading]:
    """coap.cleartext and coap.amplification from coap-client's plain GETs."""
    base = f"coap://{address}:{PORT}"
    discovery = coap_client("coap-client-notls", f"{base}/.well-known/core")
    targets = ["/.well-known/core", *_resources(discovery)]
    served: list[str] = []
    worst = (0.0, "", 0, 0)
    for target in targets:
        log = discovery if target == "/.well-known/core" else \
            coap_client("coap-client-notls", base + target)
        sent, received, code = _first_exchange(log)
        if code == "2.05":
            served.append(target)
        if sent and received / sent > worst[0]:
            worst = (received / sent, target, sent, received)
    out: dict[str, Reading] = {}
    if served:
        out["coap.cleartext"] = Reading(FAIL, f"2.05 to GET {', '.join(served)}")
    if worst[1]:
        ratio, target, sent, received = worst
        out["coap.amplification"] = Reading(
            FAIL if ratio > MAX_AMPLIFICATION else PASS,
            f"GET {target}: {sent} bytes drew {received} ({ratio:.1f}x)")
    return out


def dtls_1_0(address: str) -> bool:
    """Whether `openssl s_client -dtls1` completes a DTLS 1.0 handshake with the matrix's PSK
    (coap-client cannot offer DTLS 1.0)."""
    argv = ["openssl", "s_client", "-dtls1", "-connect", f"{address}:{PORT + 1}",
            "-noservername", "-psk_identity", IDENTITY, "-psk", KEY.encode().hex(),
            "-cipher", "PSK:ECDHE-PSK:@SECLEVEL=0"]
    done = subprocess.run(argv, input="", capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT)
    agreed = re.search(r"^New, .*, Cipher is (?!\(NONE\))", done.stdout, re.MULTILINE)
    return agreed is not None and re.search(r"Protocol\s*: DTLSv1$", done.stdout,
                                            re.MULTILINE) is not None


def read_dtls(address: str) -> Reading:
    """coap.dtls from a GET over coaps:// with the matrix's PSK (libcoap with OpenSSL), and a
    DTLS 1.0 handshake with the same PSK (openssl s_client)."""
    log = coap_client("coap-client-openssl", f"coaps://{address}:{PORT + 1}/.well-known/core",
                      "-u", IDENTITY, "-k", KEY)
    _, _, code = _first_exchange(log)
    if code is None:
        return Reading(FAIL, "no DTLS session on udp/5684")
    if dtls_1_0(address):
        return Reading(FAIL, f"GET over DTLS answered {code}; openssl s_client -dtls1 "
                             "completes DTLS 1.0 with the PSK")
    return Reading(PASS, f"GET over DTLS answered {code}; openssl s_client -dtls1 gets no "
                         "DTLS 1.0 session")


def reference(address: str, setup: Setup) -> Mapping[str, Reading]:
    return {**read_plain(address), "coap.dtls": read_dtls(address)}


# --- the peers ------------------------------------------------------------------------------

LIBCOAP = debian_version("libcoap3-bin")
PLAIN = {"coap.cleartext": FAIL, "coap.dtls": FAIL, "coap.unauthenticated-write": SKIPPED}
BESIDE_DTLS = {"coap.cleartext": FAIL, "coap.dtls": PASS, "coap.unauthenticated-write": SKIPPED}
SMALL = {"coap.amplification": PASS}
LARGE = {"coap.amplification": FAIL}


def _peer(implementation: str, version: Callable[[], str], configuration: str,
          start_peer: Callable[[Path, str], contextlib.AbstractContextManager[Setup]],
          expect: Mapping[str, Status]) -> Peer:
    return Peer(Protocol.COAP, implementation, version, configuration, start_peer, dict(expect),
                reference_tool="coap-client, openssl s_client", reference=reference)


DTLS_1_0 = {"coap.cleartext": FAIL, "coap.dtls": FAIL, "coap.unauthenticated-write": SKIPPED}

PEERS: list[Peer] = [
    _peer("libcoap", LIBCOAP, "plain, writable, large discovery and block-wise data",
          libcoap("coap-server-notls"), PLAIN | LARGE),
    _peer("libcoap + OpenSSL", LIBCOAP, "DTLS PSK beside plain, writable",
          libcoap("coap-server-openssl"), BESIDE_DTLS | LARGE),
    _peer("libcoap + GnuTLS", LIBCOAP, "DTLS PSK (DTLS 1.0 too) beside plain, writable",
          libcoap("coap-server-gnutls"), DTLS_1_0 | LARGE),
    _peer("aiocoap", pypi_version("aiocoap"), "plain, read-only", aiocoap("read-only"),
          PLAIN | SMALL),
    _peer("aiocoap", pypi_version("aiocoap"), "plain, writable", aiocoap("writable"),
          PLAIN | SMALL),
    _peer("aiocoap + tinydtls", aiocoap_dtls_version, "DTLS PSK beside plain, read-only",
          aiocoap("read-only", dtls=True), BESIDE_DTLS | SMALL),
    _peer("node-coap", npm_version("coap", NODE), "plain, read-only", node_coap("read-only"),
          PLAIN | SMALL),
    _peer("node-coap", npm_version("coap", NODE), "plain, writable", node_coap("writable"),
          PLAIN | SMALL),
]
