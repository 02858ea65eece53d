"""MQTT over WebSockets personas: a broker whose only listener is MQTT over cleartext
WebSockets (`ws`) on 8080, open to anyone.

Its listener is an HTTP port to discovery (a request without an upgrade gets 426, dated), so the
MQTT checks' statuses are written here: the catalogue's `applies_to` rule cannot tell them. The
HTTP checks judge the same port as HTTP: `http.cleartext` passes (nothing is served without the
upgrade), and so does `http.authentication`: 426 Upgrade Required serves no resource, a refusal
of every path, as on amqtt's and aedes' websockets listeners.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    FAIL,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    MQTT_ANONYMOUS,
    MQTT_CLEARTEXT,
    MQTT_DEFAULT_CREDENTIALS,
    MQTT_TOPICS,
    OPEN_PORTS,
    PASS,
    Persona,
)
from probe.lab.personas.monitor import THROTTLING
from probe.lab.servers import TcpListener
from probe.lab.servers_mqtt import MqttBroker
from probe.lab.servers_mqtt_ws import WebSocketMqtt
from probe.model import Verdict

MQTT_WS_OPEN_BROKER = Persona(
    name="mqtt-ws-open-broker",
    description="MQTT over cleartext WebSockets (ws://, path /mqtt) on 8080 that accepts "
                "anyone and delivers every topic, $SYS included",
    device_class="broker",
    listeners=(TcpListener(8080, WebSocketMqtt(MqttBroker(anonymous=True))),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, MQTT_CLEARTEXT: FAIL,
            MQTT_ANONYMOUS: FAIL, MQTT_TOPICS: FAIL, HTTP_CLEARTEXT: PASS,
            HTTP_AUTHENTICATION: PASS, CLOCK_SYNC: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: FAIL, THROTTLING: FAIL},
)

PERSONAS = (MQTT_WS_OPEN_BROKER,)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
