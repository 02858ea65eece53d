"""MQTT personas: an open broker, a device that only knows its own account, a mutual-TLS broker
and a broker that accepts connections and never answers.

Expectations are for the lab's inventory, which holds no credentials: where anonymous clients
are refused, topic authorization is `skipped` (no identity to probe with).
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    OPEN_PORTS,
    Persona,
    mqtt_expect,
    tls_expect,
)
from probe.lab.servers import Silent, TcpListener
from probe.lab.servers_mqtt import MqttBroker, MutualTls

DEVICE_ACCOUNT = ("sensor-0042", "k7-Qm2x9-Lw4p")
"""The only account of the device-login personas: lab data, not a secret."""
DEVICE_SCOPE = "devices/sensor-0042/"

MQTT_OPEN_BROKER = Persona(
    name="mqtt-open-broker",
    description="cleartext MQTT on 1883 that accepts anyone, with or without credentials, "
                "and delivers every topic, $SYS included",
    device_class="broker",
    listeners=(TcpListener(1883, MqttBroker(anonymous=True)),),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "pass",
            **mqtt_expect("fail", "fail", "fail", "not_applicable")},
    expect_verdict="nonconformant",
)

MQTT_DEVICE_LOGIN = Persona(
    name="mqtt-device-login",
    description="MQTT over TLS that accepts only the device's own account, confined to its "
                "own topics; no client certificate asked",
    device_class="sensor",
    listeners=(TcpListener(8883, MqttBroker(accounts=(DEVICE_ACCOUNT,), scope=DEVICE_SCOPE),
                           tls=True),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **mqtt_expect("pass", "pass", "skipped", "fail")},
    expect_verdict="nonconformant",
)

MQTT_MUTUAL_TLS = Persona(
    name="mqtt-mutual-tls",
    description="MQTT over TLS on 8883 that requires a client certificate (from the lab CA) "
                "before any CONNECT, then the device's own account",
    device_class="sensor",
    listeners=(TcpListener(8883, MutualTls(MqttBroker(accounts=(DEVICE_ACCOUNT,),
                                                      scope=DEVICE_SCOPE))),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass",
            **mqtt_expect("pass", "pass", "skipped", "pass"),
            **tls_expect("pass", flaws="skipped")},
    expect_verdict="conformant",
)

MQTT_SILENT = Persona(
    name="mqtt-silent",
    description="accepts TCP on 1883 and never answers a CONNECT",
    device_class="sensor",
    listeners=(TcpListener(1883, Silent()),),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "pass",
            **mqtt_expect("error", "error", "error", "not_applicable")},
    expect_verdict="nonconformant",
)

PERSONAS = (
    MQTT_OPEN_BROKER,
    MQTT_DEVICE_LOGIN,
    MQTT_MUTUAL_TLS,
    MQTT_SILENT,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
