"""The Modbus/TCP and BACnet/IP peers of the interoperability matrix (see `interop`), judged by
`plant.exposure`: pymodbus's and pyModbusTCP's Modbus/TCP servers on tcp/502 (with a device
identification, and without one: pyModbusTCP then answers Read Device Identification with an
exception) and a bacpypes3 BACnet/IP device on udp/47808. Each is declared of a class whose
allow-list in the built-in profile leaves its protocol out (`gateway`, or no class), or of the
class that allows it (`plc` allows Modbus/TCP, `building-controller` BACnet/IP).

The reference tools are nmap's NSE scripts `modbus-discover` (Report Slave ID and Read Device
Identification to unit 1) and `bacnet-info` (`-sU`, a ReadProperty of the device object): what
they find answering is exposed, and fails unless the peer's class allows that protocol, the
rule the probe's profile states for these classes. bacnet-info asks to bind source port 47808
on every address; the peer already holds that port on its own, so nmap falls back to another
source port and never listens on 47808 beside anybody.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from daemons import Daemon
from peers import bacnet_device, modbus_server, pymodbustcp_server

from interop import Peer, Protocol, Reading, Setup, nmap, pypi_version
from probe.model import Status

MODBUS_PORT, BACNET_PORT = 502, 47808
EXPOSURE = "plant.exposure"
ALLOWS = {"plc": "modbus", "building-controller": "bacnet"}
"""The class -> the plant protocol its allow-list in the built-in profile names."""
BACNET_INSTANCE = 4321

FAIL, PASS = Status.FAIL, Status.PASS
SLAVE_ID_NOTE = ("modbus-discover looks for a unit by Report Slave ID (function 17, a serial-line "
                 "function a Modbus/TCP server need not serve) and asks for the identification "
                 "only of a unit that answered it; pyModbusTCP drops the connection on that "
                 "request, so nmap finds nothing, while it answers the Read Device "
                 "Identification (43/14) the probe sends, with its objects or an exception")
Run = Callable[[Path, str], Daemon]


def _started(run: Run, ports: str, device_class: str | None
             ) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    """The peer as a device of `device_class` whose TCP scan covers `ports`."""
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        with run(tmp, address):
            yield Setup({"ports": ports, **({"class": device_class} if device_class else {})})

    return start


def _judged(protocol: str, device_class: str | None, said: list[str], found: bool) -> Reading:
    """What nmap found, judged by the class's allow-list."""
    text = " ".join(line.strip() for line in said)
    if not found:
        return Reading(PASS, f"nothing answered: {text or 'no output'}")
    allowed = ALLOWS.get(device_class or "") == protocol
    where = f"class {device_class}" if device_class else "no class"
    return Reading(PASS if allowed else FAIL,
                   f"{text} ({where}: {'allowed' if allowed else 'not allowed'})")


def modbus_reference(device_class: str | None) -> Callable[[str, Setup], Mapping[str, Reading]]:
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        said = nmap.script(address, MODBUS_PORT, "modbus-discover")
        return {EXPOSURE: _judged("modbus", device_class, said,
                                  any(line.strip().startswith("sid ") for line in said))}

    return read


def bacnet_reference(device_class: str | None) -> Callable[[str, Setup], Mapping[str, Reading]]:
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        said = nmap.script(address, BACNET_PORT, "bacnet-info", udp=True)
        return {EXPOSURE: _judged("bacnet", device_class, said, bool(said))}

    return read


def _modbus(implementation: str, distribution: str, configuration: str, run: Run,
            device_class: str | None, notes: Mapping[str, str] | None = None) -> Peer:
    where = f"class {device_class}" if device_class else "no class"
    allowed = ALLOWS.get(device_class or "") == "modbus"
    return Peer(Protocol.MODBUS, implementation, pypi_version(distribution),
                f"{configuration}, {where}", _started(run, str(MODBUS_PORT), device_class),
                {EXPOSURE: PASS if allowed else FAIL}, "nmap modbus-discover",
                modbus_reference(device_class), notes or {})


def _bacnet(device_class: str) -> Peer:
    allowed = ALLOWS.get(device_class) == "bacnet"

    def run(tmp: Path, address: str) -> Daemon:
        return bacnet_device(tmp, address, BACNET_PORT, BACNET_INSTANCE)

    return Peer(Protocol.BACNET, "bacpypes3", pypi_version("bacpypes3"),
                f"device {BACNET_INSTANCE}, class {device_class}",
                # the TCP scan covers one closed port: the device is found over UDP alone
                _started(run, "80", device_class), {EXPOSURE: PASS if allowed else FAIL},
                "nmap bacnet-info", bacnet_reference(device_class))


PEERS: list[Peer] = [
    _modbus("pymodbus", "pymodbus", "device identification", modbus_server, None),
    _modbus("pymodbus", "pymodbus", "device identification", modbus_server, "plc"),
    _modbus("pyModbusTCP", "pyModbusTCP", "device identification", pymodbustcp_server,
            "gateway", {EXPOSURE: SLAVE_ID_NOTE}),
    _modbus("pyModbusTCP", "pyModbusTCP", "no device identification (exception)",
            lambda tmp, address: pymodbustcp_server(tmp, address, identified=False), None,
            {EXPOSURE: SLAVE_ID_NOTE}),
    _bacnet("gateway"),
    _bacnet("building-controller"),
]
