"""The benchmark persona (`bench/fleet.py`): one device with the five services a fleet benchmark
times on every device, cleartext MQTT, MQTT over TLS, HTTPS, HTTP and CoAP, from the servers the
other personas use.

Expectations hold for a scan of the lab inventory (lab CA as trust anchor) with the default,
non-intrusive profile, like every persona's.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    FAIL,
    GOOD_TLS,
    MQTT_CHECKS,
    OPEN_PORTS,
    PASS,
    WEB_CHECKS,
    Persona,
    every,
)
from probe.lab.personas.coap import COAP_AMPLIFICATION, COAP_CLEARTEXT, COAP_DTLS
from probe.lab.servers import HttpPage, MqttRefuse, TcpListener, UdpListener
from probe.lab.servers_coap import CoapDevice, CoapResource
from probe.lab.servers_mqtt import MqttBroker
from probe.model import Verdict

BENCH_DEVICE = Persona(
    name="bench-device",
    description="a gateway with everything a fleet benchmark times: cleartext MQTT on 1883 "
                "open to anyone, MQTT over TLS on 8883 refusing anonymous clients, a page on "
                "HTTP 80 and on HTTPS 443 (lab certificate), readable CoAP sensor values on 5683",
    device_class="gateway",
    listeners=(
        TcpListener(1883, MqttBroker(anonymous=True)),
        TcpListener(8883, MqttRefuse(), tls=True),
        TcpListener(443, HttpPage(title="Gateway"), tls=True),
        TcpListener(80, HttpPage(title="Gateway")),
        UdpListener(5683, CoapDevice((
            CoapResource("/sensors/temperature", b"21.5", attributes=';rt="temperature";obs'),
            CoapResource("/sensors/humidity", b"43", attributes=';rt="humidity"'),
        ))),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **every(MQTT_CHECKS, FAIL),
            **GOOD_TLS, **every(WEB_CHECKS, FAIL), COAP_CLEARTEXT: FAIL, COAP_DTLS: FAIL,
            COAP_AMPLIFICATION: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
)

PERSONAS = (
    BENCH_DEVICE,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
