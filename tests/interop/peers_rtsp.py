"""The RTSP peers of the interoperability matrix (see `interop`): GStreamer's RTSP server
(gst-rtsp-server through Debian's GObject bindings) serving a stream at /live, open, with Basic
or Digest authentication on rtsp/554, and inside TLS with Basic authentication on rtsps/322.

The reference tools are nmap's NSE scripts: `rtsp-url-brute` sends DESCRIBE for the stream
path without credentials (a 200 means the description is served, `rtsp.authentication` fails;
a 401 means it is refused, it passes), and `rtsp-methods` sends OPTIONS in clear (an answer
means RTSP is offered without TLS, `rtsp.cleartext` fails). Both are forced (`+`) to run on
every port. nmap has no RTSP inside TLS, so on rtsps/322 `openssl s_client` carries the same
DESCRIBE.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from daemons import certificate
from peers import gst_rtsp

from interop import Peer, Protocol, Reading, Setup, debian_version, nmap
from probe.model import Status

PORT, TLS_PORT = 554, 322
PATH = "/live"
ACCOUNT = ("viewer", "s3cret-viewer")
AUTH = "rtsp.authentication"
CLEAR = "rtsp.cleartext"
CLIENT_TIMEOUT = 60.0
_STATUS_LINE = re.compile(r"^RTSP/1\.0 (\d{3})", re.MULTILINE)

FAIL, PASS, ERROR = Status.FAIL, Status.PASS, Status.ERROR


def _started(port: int, *, tls: bool = False, account: bool = False, digest: bool = False
             ) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        pki = certificate(tmp, address) if tls else None
        with gst_rtsp(tmp, address, port, PATH, tls=pki, account=ACCOUNT if account else None,
                      digest=digest):
            yield Setup({"ports": str(port)})

    return start


# --- the references ------------------------------------------------------------------------

def describe(address: str, port: int) -> Reading:
    """rtsp.authentication from nmap's rtsp-url-brute, DESCRIBE for PATH alone."""
    with tempfile.TemporaryDirectory(prefix="iotprobe-rtsp-") as tmp:
        urls = Path(tmp) / "urls"
        urls.write_text(PATH + "\n")
        said = nmap.script(address, port, "+rtsp-url-brute",
                           args=(f"rtsp-url-brute.urlfile={urls}",))
    text = "\n".join(line.strip() for line in said)
    if "discovered:" in text:
        return Reading(FAIL, f"DESCRIBE {PATH} without credentials: description served")
    if "401:" in text:
        return Reading(PASS, f"DESCRIBE {PATH} without credentials: 401")
    return Reading(ERROR, " ".join(text.split()) or "no output")


def options(address: str, port: int) -> Reading:
    """rtsp.cleartext from nmap's rtsp-methods: OPTIONS in clear on the peer's port."""
    said = nmap.script(address, port, "+rtsp-methods")
    if said:
        return Reading(FAIL, f"OPTIONS answered in clear on tcp/{port}: "
                             + " ".join(line.strip() for line in said))
    return Reading(PASS, f"no answer to OPTIONS in clear on tcp/{port}")


def _first_answer(argv: list[str], request: str) -> tuple[str, str]:
    """Send `request` through the client `argv` and read its output until an RTSP status line
    has come (or CLIENT_TIMEOUT passed, or the client ended); then stop the client by PID.
    Returns (status line or "", the client's output)."""
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as client:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(request.encode())
        client.stdin.flush()
        output = b""
        end = time.monotonic() + CLIENT_TIMEOUT
        try:
            while (left := end - time.monotonic()) > 0:
                ready, _, _ = select.select([client.stdout], [], [], left)
                chunk = os.read(client.stdout.fileno(), 4096) if ready else b""
                output += chunk
                found = _STATUS_LINE.search(output.decode(errors="replace"))
                if found is not None or not chunk:
                    return (found.group(0) if found else ""), output.decode(errors="replace")
            return "", output.decode(errors="replace")
        finally:
            client.terminate()
            client.wait(CLIENT_TIMEOUT)


def describe_tls(address: str, port: int) -> Reading:
    """rtsp.authentication inside TLS: DESCRIBE for PATH through `openssl s_client`."""
    request = (f"DESCRIBE rtsp://{address}:{port}{PATH} RTSP/1.0\r\nCSeq: 1\r\n"
               "Accept: application/sdp\r\n\r\n")
    argv = ["openssl", "s_client", "-quiet", "-noservername", "-connect", f"{address}:{port}"]
    line, output = _first_answer(argv, request)
    if not line:
        return Reading(ERROR, f"no RTSP answer inside TLS: {output.strip()[-200:]}")
    code = line.split()[1]
    if code == "200":
        return Reading(FAIL, f"DESCRIBE {PATH} inside TLS without credentials: 200")
    if code == "401":
        return Reading(PASS, f"DESCRIBE {PATH} inside TLS without credentials: 401")
    return Reading(ERROR, f"DESCRIBE {PATH} inside TLS: {line}")


def reference(port: int, *, tls: bool = False) -> Callable[[str, Setup], Mapping[str, Reading]]:
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        return {AUTH: describe_tls(address, port) if tls else describe(address, port),
                CLEAR: options(address, port)}

    return read


def _peer(configuration: str, start: Callable[[Path, str], contextlib.AbstractContextManager[
          Setup]], expect: Mapping[str, Status], read: Callable[[str, Setup], Mapping[
              str, Reading]], tool: str) -> Peer:
    return Peer(Protocol.RTSP, "gst-rtsp-server", debian_version("libgstrtspserver-1.0-0"),
                configuration, start, expect, tool, read)


NMAP = "nmap rtsp-url-brute, rtsp-methods"

PEERS: list[Peer] = [
    _peer("open, rtsp/554", _started(PORT), {AUTH: FAIL, CLEAR: FAIL}, reference(PORT), NMAP),
    _peer("Basic authentication, rtsp/554", _started(PORT, account=True),
          {AUTH: PASS, CLEAR: FAIL}, reference(PORT), NMAP),
    _peer("Digest authentication, rtsp/554", _started(PORT, account=True, digest=True),
          {AUTH: PASS, CLEAR: FAIL}, reference(PORT), NMAP),
    _peer("TLS and Basic authentication, rtsps/322", _started(TLS_PORT, tls=True, account=True),
          {AUTH: PASS, CLEAR: PASS}, reference(TLS_PORT, tls=True),
          "openssl s_client, nmap rtsp-methods"),
]
