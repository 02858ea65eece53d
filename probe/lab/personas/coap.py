"""CoAP personas: a readable sensor, a writable actuator, a chatty gateway whose discovery
document dwarfs the request, a locked-down gateway, and two CoAPS-only sensors (DTLS 1.2 only,
and one that still accepts DTLS 1.0).

`coap.unauthenticated-write` is intrusive, so under the default profile it is `skipped`;
each persona writes what an intrusive scan must report instead. The catalogue names no UDP
service, so every CoAP persona writes the statuses of all the CoAP checks, and a persona of
another family that answers on a CoAP port writes them too.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    FAIL,
    NOT_APPLICABLE,
    OPEN_PORTS,
    PASS,
    Persona,
    family,
)
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
from probe.model import Verdict

COAP_CLEARTEXT = "coap.cleartext"
COAP_DTLS = "coap.dtls"
COAP_WRITE = "coap.unauthenticated-write"
COAP_AMPLIFICATION = "coap.amplification"
NO_COAP = {check_id: NOT_APPLICABLE for check_id in family("coap")}
"""No CoAP endpoint: every CoAP check is not applicable (and the write, by rule)."""


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
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: FAIL,
            COAP_DTLS: FAIL, COAP_AMPLIFICATION: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={COAP_WRITE: PASS},
)

COAP_ACTUATOR = Persona(
    name="coap-actuator",
    description="plain CoAP on 5683 whose valve takes a PUT from anyone",
    device_class="gateway",
    listeners=(_coap(CoapDevice((
        CoapResource("/actuators/valve", b"closed", writable=True, attributes=';rt="valve"'),
        CoapResource("/sensors/flow", b"3.2", attributes=';rt="flow"'),
    ))),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: FAIL,
            COAP_DTLS: FAIL, COAP_AMPLIFICATION: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={COAP_WRITE: FAIL},
)

COAP_CHATTY = Persona(
    name="coap-chatty",
    description="plain CoAP on 5683 whose discovery document (over 1 KiB, one datagram) lists "
                "24 resources that all want authorization",
    device_class="gateway",
    listeners=(_coap(CoapDevice(_ZONES)),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: FAIL,
            COAP_DTLS: FAIL, COAP_AMPLIFICATION: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={COAP_WRITE: NOT_APPLICABLE},
)

COAP_LOCKED = Persona(
    name="coap-locked",
    description="plain CoAP on 5683 that answers 4.01 to everything, beside DTLS 1.2 on 5684",
    device_class="gateway",
    listeners=(_coap(CoapDevice((CoapResource("/config", b"{}", protected=True),),
                                discovery_protected=True)),
               _coaps()),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: PASS,
            COAP_DTLS: PASS, COAP_AMPLIFICATION: PASS},
    expect_verdict=Verdict.CONFORMANT,
    expect_intrusive={COAP_WRITE: NOT_APPLICABLE},
)

COAPS_SENSOR = Persona(
    name="coaps-sensor",
    description="CoAP over DTLS only: 5684 answers a DTLS 1.2 hello with a cookie exchange and "
                "a PSK suite, and refuses DTLS 1.0 with a protocol_version alert",
    device_class="sensor",
    listeners=(_coaps(),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: PASS,
            COAP_DTLS: PASS, COAP_AMPLIFICATION: NOT_APPLICABLE},
    expect_verdict=Verdict.CONFORMANT,
    expect_intrusive={COAP_WRITE: NOT_APPLICABLE},
)

COAPS_LEGACY = Persona(
    name="coaps-legacy",
    description="CoAP over DTLS only, but 5684 still completes a DTLS 1.0 hello",
    device_class="sensor",
    listeners=(_coaps(DtlsHello(versions=frozenset({DTLS_1_0, DTLS_1_2}),
                                suites=(PSK_AES_128_CCM_8, PSK_AES_128_CBC_SHA))),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, COAP_CLEARTEXT: PASS,
            COAP_DTLS: FAIL, COAP_AMPLIFICATION: NOT_APPLICABLE},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={COAP_WRITE: NOT_APPLICABLE},
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
