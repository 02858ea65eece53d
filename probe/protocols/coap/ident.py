"""How UDP discovery finds CoAP: GET /.well-known/core on udp/5683 and the ports the inventory
names `coap` (`probe.protocols.coap.wire.discover`)."""

from __future__ import annotations

from probe.observe.udp import UdpProbe
from probe.protocols.coap import wire

UDP = UdpProbe("coap", 5683, frozenset({"coap"}), wire.discover)
