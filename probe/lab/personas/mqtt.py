"""MQTT personas: an open broker, a device that only knows its own account, a mutual-TLS broker
and a broker that accepts connections and never answers.

Expectations are for the lab's inventory, which holds no credentials: where anonymous clients
are refused, topic authorization is `skipped` (no identity to probe with).
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    ERROR,
    FAIL,
    GOOD_TLS,
    MQTT_ANONYMOUS,
    MQTT_CLEARTEXT,
    MQTT_CLIENT_CERTIFICATE,
    MQTT_DEFAULT_CREDENTIALS,
    MQTT_TOPICS,
    OPEN_PORTS,
    PASS,
    REFUSING_MQTTS,
    SKIPPED,
    TLS_FLAWS,
    Persona,
)
from probe.lab.servers import Silent, TcpListener
from probe.lab.servers_mqtt import MqttBroker, MutualTls
from probe.model import Verdict

DEVICE_ACCOUNT = ("sensor-0042", "k7-Qm2x9-Lw4p")
"""The only account of the device-login personas: lab data, not a secret."""
DEVICE_SCOPE = "devices/sensor-0042/"

MQTT_OPEN_BROKER = Persona(
    name="mqtt-open-broker",
    description="cleartext MQTT on 1883 that accepts anyone, with or without credentials, "
                "and delivers every topic, $SYS included",
    device_class="broker",
    listeners=(TcpListener(1883, MqttBroker(anonymous=True)),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, MQTT_CLEARTEXT: FAIL,
            MQTT_ANONYMOUS: FAIL, MQTT_TOPICS: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: FAIL},
)

MQTT_DEVICE_LOGIN = Persona(
    name="mqtt-device-login",
    description="MQTT over TLS that accepts only the device's own account, confined to its "
                "own topics; no client certificate asked",
    device_class="sensor",
    listeners=(TcpListener(8883, MqttBroker(accounts=(DEVICE_ACCOUNT,), scope=DEVICE_SCOPE),
                           tls=True),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

MQTT_MUTUAL_TLS = Persona(
    name="mqtt-mutual-tls",
    description="MQTT over TLS on 8883 that requires a client certificate (from the lab CA) "
                "before any CONNECT, then the device's own account",
    device_class="sensor",
    listeners=(TcpListener(8883, MutualTls(MqttBroker(accounts=(DEVICE_ACCOUNT,),
                                                      scope=DEVICE_SCOPE))),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS,
            MQTT_CLIENT_CERTIFICATE: PASS, **GOOD_TLS, TLS_FLAWS: SKIPPED},
    expect_verdict=Verdict.CONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

MQTT_SILENT = Persona(
    name="mqtt-silent",
    description="accepts TCP on 1883 and never answers a CONNECT",
    device_class="sensor",
    listeners=(TcpListener(1883, Silent()),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, MQTT_CLEARTEXT: ERROR,
            MQTT_ANONYMOUS: ERROR, MQTT_TOPICS: ERROR},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: ERROR},
)

PERSONAS = (
    MQTT_OPEN_BROKER,
    MQTT_DEVICE_LOGIN,
    MQTT_MUTUAL_TLS,
    MQTT_SILENT,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
