"""Real RTSP, Modbus/TCP and BACnet/IP peers for the tests, each a child process on its own
loopback address: GStreamer's RTSP server (Debian's python3 with its GObject bindings),
pymodbus's and pyModbusTCP's TCP servers and a bacpypes3 device (PyPI, the project's
virtualenv). The SSH and Telnet peers are in `peers.ssh_telnet`."""

from __future__ import annotations

import sys
from pathlib import Path

from daemons import Certificate, Daemon, start

HERE = Path(__file__).parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and the GStreamer typelibs are


def gst_rtsp(tmp: Path, address: str, port: int, path: str, *, tls: Certificate | None = None,
             account: tuple[str, str] | None = None, digest: bool = False) -> Daemon:
    """GStreamer's RTSP server serving a test tone at `path`; RTSPS with `tls`; Basic
    authentication required with `account` (Digest authentication with `digest`)."""
    pem = "-"
    if tls is not None:
        bundle = tmp / f"rtsp-{address}-{port}.pem"
        bundle.write_bytes(tls.cert.read_bytes() + tls.key.read_bytes())
        pem = str(bundle)
    argv = [SYSTEM_PYTHON, str(HERE / "gst_rtsp.py"), address, str(port), path, pem,
            *(account or ()), *(["digest"] if account and digest else [])]
    return start(f"gst-rtsp-{address}-{port}", argv, tmp, address, [(port, "tcp")])


def modbus_server(tmp: Path, address: str, port: int = 502) -> Daemon:
    """pymodbus's Modbus/TCP server with a device identification."""
    argv = [sys.executable, str(HERE / "modbus_server.py"), address, str(port)]
    return start(f"pymodbus-{address}", argv, tmp, address, [(port, "tcp")])


def pymodbustcp_server(tmp: Path, address: str, port: int = 502, *,
                       identified: bool = True) -> Daemon:
    """pyModbusTCP's Modbus/TCP server, with a device identification or without one (it then
    answers Read Device Identification with an exception)."""
    argv = [sys.executable, str(HERE / "pymodbustcp_server.py"), address, str(port),
            "identified" if identified else "anonymous"]
    return start(f"pymodbustcp-{address}", argv, tmp, address, [(port, "tcp")])


def bacnet_device(tmp: Path, address: str, port: int = 47808, instance: int = 1234) -> Daemon:
    """A bacpypes3 BACnet/IP device (device object `instance`)."""
    argv = [sys.executable, str(HERE / "bacnet_device.py"), address, str(port), str(instance)]
    return start(f"bacpypes3-{address}", argv, tmp, address, [(port, "udp")])
