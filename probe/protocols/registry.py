"""Every protocol discovery knows, as each package's `ident.py` describes it: an explicit,
ordered list, read by `probe.observe.discovery` (which hands `UDP` to the UDP dispatcher).

It imports only `ident` modules (and the wire code they ask with), never collectors or checks,
so discovery can import it. Adding a UDP protocol is its package's `ident.py` and one line
here.
"""

from __future__ import annotations

from probe.observe.udp import UdpProbe
from probe.protocols.coap import ident as coap
from probe.protocols.dtls import ident as dtls
from probe.protocols.mdns import ident as mdns
from probe.protocols.snmp import ident as snmp
from probe.protocols.ssdp import ident as ssdp
from probe.protocols.tftp import ident as tftp

UDP: tuple[UdpProbe, ...] = (
    coap.UDP,
    dtls.UDP,
    snmp.UDP,
    ssdp.UDP,
    mdns.UDP,
    tftp.UDP,
)
"""The UDP protocols discovery asks for (in the order of the previous port table)."""
