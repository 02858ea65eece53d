"""CoAP personas: a readable sensor, a writable actuator, a chatty gateway whose discovery
document dwarfs the request, a locked-down gateway, and two CoAPS-only sensors (DTLS 1.2 only,
and one that still accepts DTLS 1.0).

`coap.unauthenticated-write` is intrusive, so under the default profile every persona expects
`skipped`; `INTRUSIVE_WRITE` gives what an intrusive scan must report instead.
"""

from __future__ import annotations

from types import MappingProxyType

from probe.lab.personas.base import CLEARTEXT_MANAGEMENT, OPEN_PORTS, Persona
from probe.lab.servers import UdpListener
from probe.lab.servers_coap import (
    DTLS_1_0,
    DTLS_1_2,
    PSK_AES_128_CBC_SHA,
    PSK_AES_128_CCM_8,
    CoapDevice,
    CoapResource,
    DtlsHello,
)

COAP_CLEARTEXT = "coap.cleartext"
COAP_DTLS = "coap.dtls"
COAP_WRITE = "coap.unauthenticated-write"
COAP_AMPLIFICATION = "coap.amplification"


def coap_expect(cleartext: str, dtls: str, amplification: str) -> dict[str, str]:
    return {COAP_CLEARTEXT: cleartext, COAP_DTLS: dtls, COAP_WRITE: "skipped",
            COAP_AMPLIFICATION: amplification}


def _coap(device: CoapDevice) -> UdpListener:
    return UdpListener(5683, device)


def _coaps(hello: DtlsHello | None = None) -> UdpListener:
    return UdpListener(5684, hello or DtlsHello())


# Attributes as a vendor's verbose firmware lists them: the document grows past 1 KiB, in one
# datagram, for a 25-byte request.
_ZONES = tuple(
    CoapResource(f"/api/v1/zones/{zone}/{kind}", b"", protected=True,
                 attributes=f';rt="com.example.{kind}";if="core.s";title="Zone {zone} {kind}"')
    for zone in range(1, 9) for kind in ("temperature", "humidity", "setpoint"))

COAP_SENSOR = Persona(
    name="coap-sensor",
    description="plain CoAP on 5683: readable sensor values, every write refused (4.05)",
    device_class="sensor",
    listeners=(_coap(CoapDevice((
        CoapResource("/sensors/temperature", b"21.5", attributes=';rt="temperature";obs'),
        CoapResource("/sensors/humidity", b"43", attributes=';rt="humidity"'),
    ))),),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("fail", "fail", "pass")},
    expect_verdict="nonconformant",
)

COAP_ACTUATOR = Persona(
    name="coap-actuator",
    description="plain CoAP on 5683 whose valve takes a PUT from anyone",
    device_class="gateway",
    listeners=(_coap(CoapDevice((
        CoapResource("/actuators/valve", b"closed", writable=True, attributes=';rt="valve"'),
        CoapResource("/sensors/flow", b"3.2", attributes=';rt="flow"'),
    ))),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("fail", "fail", "pass")},
    expect_verdict="nonconformant",
)

COAP_CHATTY = Persona(
    name="coap-chatty",
    description="plain CoAP on 5683 whose discovery document (over 1 KiB, one datagram) lists "
                "24 resources that all want authorization",
    device_class="gateway",
    listeners=(_coap(CoapDevice(_ZONES)),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("fail", "fail", "fail")},
    expect_verdict="nonconformant",
)

COAP_LOCKED = Persona(
    name="coap-locked",
    description="plain CoAP on 5683 that answers 4.01 to everything, beside DTLS 1.2 on 5684",
    device_class="gateway",
    listeners=(_coap(CoapDevice((CoapResource("/config", b"{}", protected=True),),
                                discovery_protected=True)),
               _coaps()),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("pass", "pass", "pass")},
    expect_verdict="conformant",
)

COAPS_SENSOR = Persona(
    name="coaps-sensor",
    description="CoAP over DTLS only: 5684 answers a DTLS 1.2 hello with a cookie exchange and "
                "a PSK suite, and refuses DTLS 1.0 with a protocol_version alert",
    device_class="sensor",
    listeners=(_coaps(),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("pass", "pass", "not_applicable")},
    expect_verdict="conformant",
)

COAPS_LEGACY = Persona(
    name="coaps-legacy",
    description="CoAP over DTLS only, but 5684 still completes a DTLS 1.0 hello",
    device_class="sensor",
    listeners=(_coaps(DtlsHello(versions=frozenset({DTLS_1_0, DTLS_1_2}),
                                suites=(PSK_AES_128_CCM_8, PSK_AES_128_CBC_SHA))),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **coap_expect("pass", "fail", "not_applicable")},
    expect_verdict="nonconformant",
)

PERSONAS = (
    COAP_SENSOR,
    COAP_ACTUATOR,
    COAP_CHATTY,
    COAP_LOCKED,
    COAPS_SENSOR,
    COAPS_LEGACY,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""

INTRUSIVE_WRITE = MappingProxyType({
    "coap-sensor": "pass",
    "coap-actuator": "fail",
    "coap-chatty": "not_applicable",
    "coap-locked": "not_applicable",
    "coaps-sensor": "not_applicable",
    "coaps-legacy": "not_applicable",
})
"""What `coap.unauthenticated-write` must report on each CoAP persona in an intrusive scan."""
