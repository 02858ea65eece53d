"""How UDP discovery finds DTLS: a DTLS 1.2 ClientHello on udp/5684 and the ports the
inventory names `coaps` or `dtls` (`probe.protocols.dtls.wire.discover`)."""

from __future__ import annotations

from probe.observe.udp import UdpProbe
from probe.protocols.dtls import wire

UDP = UdpProbe("dtls", 5684, frozenset({"coaps", "dtls"}), wire.discover)
