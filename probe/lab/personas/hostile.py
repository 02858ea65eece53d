"""Hostile personas: devices that crawl, lie, flood, reset or vanish.

Each misbehaves in one way (probe.lab.servers_hostile); `expect` says what a correct probe reports
for each check under the default, non-intrusive profile: `error` where the device withholds the
facts a check needs (with the cause in the summary), a verdict where what it did send decides
one. The hostile tests (tests/test_hostile.py) also hold every scan of them to its device budget
and to bounded memory, and check that the devices scanned beside them get the same results as
when scanned alone. `hang` (accepts, never answers) is in probe.lab.personas.

The device that vanishes in the middle of a scan is not registered: it changes state when it is
scanned, so a lab that runs it would answer the first scan differently from the next. `vanishing`
makes one for a test, which stops its listeners when the countdown runs out.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    ERROR,
    FAIL,
    GOOD_TLS,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    MQTT_ANONYMOUS,
    MQTT_CHECKS,
    MQTT_CLEARTEXT,
    MQTT_TOPICS,
    OPEN_PORTS,
    PASS,
    REFUSING_MQTTS,
    SKIPPED,
    TLS_CHECKS,
    WEB_CHECKS,
    Persona,
    every,
)
from probe.lab.personas.coap import COAP_AMPLIFICATION, COAP_CLEARTEXT, COAP_DTLS, NO_COAP
from probe.lab.servers import FtpLogin, MqttRefuse, TcpListener, TelnetLogin, UdpListener
from probe.lab.servers_hostile import (
    STALLED_RECORD,
    BadConnack,
    CoapFlood,
    Countdown,
    Drip,
    EndlessHttp,
    EndlessMqtt,
    Garbage,
    GarbageDatagrams,
    Reset,
    TlsStall,
    Vanishing,
)
from probe.model import Verdict

DRIP_TEXT = b"." * 600
"""What the dripping device sends on its cleartext ports, a byte a second: ten minutes of dots,
which no protocol identifies, whatever the probe's timeout."""
DRIP_TLS = STALLED_RECORD + DRIP_TEXT
"""On its TLS port: a record header promising 16 KB, then the dots: the handshake never ends."""

SILENT_MQTTS = every(MQTT_CHECKS, ERROR)
"""An MQTT-over-TLS port (8883) that never sends a byte: nothing about it can be decided."""
UNDECIDED_MQTT = {MQTT_CLEARTEXT: ERROR, MQTT_ANONYMOUS: ERROR, MQTT_TOPICS: SKIPPED}
"""A cleartext MQTT port (1883) whose CONNACK is malformed: the CONNECTs were not answered
decisively; without credentials topic authorization is not tried."""

HOSTILE_DRIP = Persona(
    name="hostile-drip",
    description="drips a byte a second on every port: dots on Telnet and MQTT (1883), a TLS "
                "record header promising 16 KB and then dots on 8883",
    device_class="sensor",
    listeners=(TcpListener(23, Drip(DRIP_TEXT)), TcpListener(1883, Drip(DRIP_TEXT)),
               TcpListener(8883, Drip(DRIP_TLS))),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: ERROR, **SILENT_MQTTS,
            **every(TLS_CHECKS, ERROR), **NO_COAP},
    expect_verdict=Verdict.NONCONFORMANT,
)

HOSTILE_GARBAGE = Persona(
    name="hostile-garbage",
    description="answers noise on every protocol: Telnet, HTTP, HTTPS, MQTT and MQTT-over-TLS "
                "ports, and CoAP, DTLS and SNMP datagrams; none of them is identified",
    device_class="sensor",
    listeners=(
        *(TcpListener(port, Garbage(seed=port)) for port in (23, 80, 443, 1883, 8883)),
        *(UdpListener(port, GarbageDatagrams(seed=port)) for port in (161, 5683, 5684)),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: ERROR, **every(MQTT_CHECKS, ERROR),
            **every(TLS_CHECKS, ERROR), **every(WEB_CHECKS, ERROR), **NO_COAP},
    expect_verdict=Verdict.NONCONFORMANT,
)

HOSTILE_BAD_CONNACK = Persona(
    name="hostile-bad-connack",
    description="answers every MQTT CONNECT on 1883 with a CONNACK whose remaining length runs "
                "past four bytes",
    device_class="broker",
    listeners=(TcpListener(1883, BadConnack()),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **UNDECIDED_MQTT, **NO_COAP},
    expect_verdict=Verdict.NONCONFORMANT,
)

HOSTILE_ENDLESS = Persona(
    name="hostile-endless",
    description="answers MQTT (1883) with a CONNACK claiming 256 MB and streams it, and HTTP "
                "(80) with a body without end and without a Date header",
    device_class="gateway",
    listeners=(TcpListener(1883, EndlessMqtt()), TcpListener(80, EndlessHttp())),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **UNDECIDED_MQTT,
            HTTP_CLEARTEXT: FAIL, HTTP_AUTHENTICATION: FAIL, CLOCK_SYNC: FAIL, **NO_COAP},
    expect_verdict=Verdict.NONCONFORMANT,
)

HOSTILE_TLS_STALL = Persona(
    name="hostile-tls-stall",
    description="answers a ClientHello (8883, 443) with a TLS record header promising 16 KB, "
                "a few bytes of it, then silence",
    device_class="camera",
    listeners=(TcpListener(8883, TlsStall()), TcpListener(443, TlsStall())),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **SILENT_MQTTS,
            **every(TLS_CHECKS, ERROR),
            **every(tuple(c for c in WEB_CHECKS if c != HTTP_CLEARTEXT), ERROR), **NO_COAP},
    expect_verdict=Verdict.INCONCLUSIVE,
)

HOSTILE_COAP_FLOOD = Persona(
    name="hostile-coap-flood",
    description="answers every CoAP request on 5683 with 200 copies of a 1 KB response; MQTT "
                "over TLS on 8883 refuses anonymous clients",
    device_class="gateway",
    listeners=(UdpListener(5683, CoapFlood()), TcpListener(8883, MqttRefuse(), tls=True)),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **GOOD_TLS,
            COAP_CLEARTEXT: FAIL, COAP_DTLS: FAIL, COAP_AMPLIFICATION: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
)

HOSTILE_RESET = Persona(
    name="hostile-reset",
    description="accepts every connection (Telnet, MQTT, MQTT over TLS) and resets it at once",
    device_class="sensor",
    listeners=tuple(TcpListener(port, Reset()) for port in (23, 1883, 8883)),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: ERROR, **SILENT_MQTTS,
            **every(TLS_CHECKS, ERROR), **NO_COAP},
    expect_verdict=Verdict.NONCONFORMANT,
)

PERSONAS = (
    HOSTILE_DRIP,
    HOSTILE_GARBAGE,
    HOSTILE_BAD_CONNACK,
    HOSTILE_ENDLESS,
    HOSTILE_TLS_STALL,
    HOSTILE_COAP_FLOOD,
    HOSTILE_RESET,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""

VANISHING_EXPECT = {OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: ERROR, MQTT_CLEARTEXT: ERROR,
                    MQTT_ANONYMOUS: ERROR, MQTT_TOPICS: ERROR, **NO_COAP}
"""The vanishing device's open ports were seen (21, 23 and 1883 are not allowed on a sensor);
everything else it took away with it."""


def vanishing(countdown: Countdown) -> Persona:
    """A device with FTP, Telnet and cleartext MQTT that serves one connection per port (the
    port scan's) and then resets every connection; `countdown` (one per listener) says when it
    has gone, so that a test can also close its listeners."""
    return Persona(
        name="hostile-vanishing",
        description="disappears in the middle of a scan: after the port scan's connections it "
                    "resets every connection (and its listeners close)",
        device_class="sensor",
        listeners=(
            TcpListener(21, Vanishing(FtpLogin(), countdown)),
            TcpListener(23, Vanishing(TelnetLogin(banner="\r\nvanishing\r\n"), countdown)),
            TcpListener(1883, Vanishing(MqttRefuse(), countdown)),
        ),
        expect=VANISHING_EXPECT,
        expect_verdict=Verdict.NONCONFORMANT,
    )
