"""BACnet/IP in UDP discovery: a unicast Who-Is to udp/47808 (and to the ports the inventory
names `bacnet`); an I-Am that parses makes the port `bacnet`, with the device instance and
vendor as evidence."""

from __future__ import annotations

from probe.context import DeviceContext
from probe.observe.udp import Parsed, UdpProbe, UdpService, ask
from probe.protocols.bacnet import codec

PORT = 47808
SERVICE = "bacnet"


def _parse(data: bytes) -> Parsed:
    found = codec.parse_i_am(data)
    if found is None:
        return None
    return found.detail, {"instance": found.instance, "vendor": found.vendor,
                          "max_apdu": found.max_apdu, "segmentation": found.segmentation}


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Who-Is to `port` (sent again when nothing came back by half the timeout): the service
    the I-Am shows, `unknown` for another answer, None for silence."""
    return await ask(ctx, port, SERVICE, (codec.who_is(), _parse))


UDP = UdpProbe(SERVICE, PORT, frozenset({"bacnet"}), discover)
