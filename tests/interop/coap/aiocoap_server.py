"""aiocoap as a CoAP device of the interoperability matrix: `python aiocoap_server.py ADDRESS
PORT read-only|writable [IDENTITY KEY]`; with a PSK identity and key, the same site is served
over DTLS too, on PORT + 1, by aiocoap's tinydtls server transport (PyPI DTLSSocket).

aiocoap does the protocol (deduplication, piggybacked answers, block-wise transfers, 4.05 for a
method a resource does not render); this script only wires a site: its discovery document
(aiocoap's own `WKCResource`) and two sensor values, which `writable` lets anyone replace.
"""

from __future__ import annotations

import asyncio
import sys

import aiocoap
import aiocoap.credentials
import aiocoap.resource

TEXT_PLAIN = 0


class Sensor(aiocoap.resource.Resource):
    """A value any client reads; PUT is left to aiocoap (4.05) unless the site is writable."""

    def __init__(self, value: bytes) -> None:
        super().__init__()
        self.value = value

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.value, content_format=TEXT_PLAIN)


class WritableSensor(Sensor):
    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


async def serve(address: str, port: int, mode: str, psk: list[str]) -> None:
    kind = WritableSensor if mode == "writable" else Sensor
    site = aiocoap.resource.Site()
    site.add_resource([".well-known", "core"],
                      aiocoap.resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["sensors", "temperature"], kind(b"21.5"))
    site.add_resource(["config", "interval"], kind(b"60"))
    credentials = aiocoap.credentials.CredentialsMap()
    transports = ["udp6"]
    if psk:
        identity, key = psk
        credentials.load_from_dict({":client": {"dtls": {
            "client-identity": {"ascii": identity}, "psk": {"ascii": key}}}})
        transports.append("tinydtls_server")  # binds PORT + 1 by itself
    await aiocoap.Context.create_server_context(site, bind=(address, port), transports=transports,
                                                server_credentials=credentials)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:6]))
