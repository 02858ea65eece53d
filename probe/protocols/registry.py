"""Every protocol discovery knows, as each package's `ident.py` describes it: explicit, ordered
lists. `probe.observe.identify` reads `TCP`; `probe.observe.discovery` hands `UDP` to the UDP
dispatcher.

It imports only `ident` modules (and the wire code they ask with), never collectors or checks,
so discovery can import it. Adding a protocol to discovery is its package's `ident.py` and one
line here.
"""

from __future__ import annotations

from probe.observe.udp import UdpProbe
from probe.protocols.bacnet import ident as bacnet
from probe.protocols.banner import ident as banner
from probe.protocols.base import TcpIdent
from probe.protocols.coap import ident as coap
from probe.protocols.dtls import ident as dtls
from probe.protocols.http import ident as http
from probe.protocols.mdns import ident as mdns
from probe.protocols.modbus import ident as modbus
from probe.protocols.mqtt import ident as mqtt
from probe.protocols.rtsp import ident as rtsp
from probe.protocols.snmp import ident as snmp
from probe.protocols.ssdp import ident as ssdp
from probe.protocols.ssh import ident as ssh
from probe.protocols.telnet import ident as telnet
from probe.protocols.tftp import ident as tftp
from probe.protocols.tls import ident as tls

TCP: tuple[TcpIdent, ...] = (
    banner.TCP,
    tls.TCP,
    http.TCP,
    mqtt.TCP,
    rtsp.TCP,
    modbus.TCP,
    ssh.TCP,
    telnet.TCP,
)
"""The TCP protocols identification knows; their judged services are listed in this order."""

UDP: tuple[UdpProbe, ...] = (
    coap.UDP,
    dtls.UDP,
    snmp.UDP,
    ssdp.UDP,
    mdns.UDP,
    tftp.UDP,
    bacnet.UDP,
)
"""The UDP protocols discovery asks for (in the order of the previous port table)."""
