"""Monitoring personas (27400-6.5): devices that report their failed logins over syslog (TLS)
or MQTT, one that reports over cleartext syslog, one that reports nothing, one that throttles
brute force.

A device's syslog collector is its own address (UDP `SYSLOG_UDP_PORT`, TLS `SYSLOG_TLS_PORT`),
where the probe listens during the canary (after discovery, so it never finds its own socket):
devices, and labs run side by side, never share a collector port.

`expect` is what the probe reports with the inventory that `iotprobe lab up` writes, which
declares no monitoring sink: the 6.5 checks are `skipped`. `expect_monitored` is what changes
when the device's inventory entry carries `lab_monitor(...)` (its sinks; the MQTT ones log in
as `MONITOR_ACCOUNT`), and `expect_intrusive` holds the throttling result with `--intrusive`.
"""

from __future__ import annotations

from typing import Any

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    FAIL,
    MQTT_DEFAULT_CREDENTIALS,
    OPEN_PORTS,
    PASS,
    REFUSING_MQTTS,
    SKIPPED,
    Persona,
)
from probe.lab.personas.mqtt import DEVICE_ACCOUNT, DEVICE_SCOPE
from probe.lab.servers import TcpListener
from probe.lab.servers_monitor import BasicAuthSite, ReportingBroker, SyslogReporter, Throttle
from probe.model import Verdict
from probe.secrets import Secret

AUTH_EVENT = "monitor.auth-failure-event"
EVENT_TRANSPORT = "monitor.event-transport"
THROTTLING = "monitor.bruteforce-throttling"
HEARTBEAT = "monitor.heartbeat"

SINK_ADDRESS = "127.65.14.1"
"""The name `probe.lab.selftest` gives its syslog listener's certificate. The collectors
themselves are the devices' own addresses, and the personas do not check the certificate's name,
so any name will do."""
SYSLOG_UDP_PORT = 5514
SYSLOG_TLS_PORT = 6514
MONITOR_ACCOUNT = ("monitor", "lab-monitor-Vq83")
"""The monitoring login of the MQTT-reporting persona: lab data, not a secret."""
EVENT_TOPIC = "security/auth"
HEARTBEAT_TOPIC = "devices/heartbeat"
HEARTBEAT_INTERVAL = 1.0
WEB_ACCOUNT = ("admin", "lab-web-Zr61")


UNMONITORED = {AUTH_EVENT: SKIPPED, EVENT_TRANSPORT: SKIPPED, HEARTBEAT: SKIPPED}
"""No sink declared: nothing to watch for events or heartbeats (throttling is intrusive)."""


def _reporting(**options: Any) -> TcpListener:
    """The device account's MQTT over TLS on 8883 (anonymous clients refused)."""
    return TcpListener(8883, ReportingBroker(accounts=(DEVICE_ACCOUNT,), scope=DEVICE_SCOPE,
                                             **options), tls=True)


MONITOR_SYSLOG_TLS = Persona(
    name="monitor-syslog-tls",
    description="MQTT over TLS that reports every refused login to the fleet's collector as "
                "RFC 5424 syslog over TLS (RFC 5425); it does not throttle",
    device_class="sensor",
    listeners=(_reporting(syslog=SyslogReporter(SYSLOG_TLS_PORT, transport="tls")),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **UNMONITORED},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
    expect_monitored={AUTH_EVENT: PASS, EVENT_TRANSPORT: PASS},
)

MONITOR_MQTT_EVENTS = Persona(
    name="monitor-mqtt-events",
    description="MQTT over TLS that publishes every refused login on its own security topic "
                f"({EVENT_TOPIC}) and a heartbeat every {HEARTBEAT_INTERVAL:g} s on "
                f"{HEARTBEAT_TOPIC}; the monitoring account reads both",
    device_class="sensor",
    listeners=(TcpListener(8883, ReportingBroker(
        accounts=(DEVICE_ACCOUNT, MONITOR_ACCOUNT), event_topic=EVENT_TOPIC,
        heartbeat_topic=HEARTBEAT_TOPIC, heartbeat_every=HEARTBEAT_INTERVAL), tls=True),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **UNMONITORED},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
    expect_monitored={AUTH_EVENT: PASS, EVENT_TRANSPORT: PASS, HEARTBEAT: PASS},
)

MONITOR_CLEARTEXT = Persona(
    name="monitor-cleartext",
    description="a web console on 8080 whose /admin asks for Basic credentials and reports "
                "each refused user name as RFC 3164 syslog over UDP (cleartext)",
    device_class="camera",
    listeners=(TcpListener(8080, BasicAuthSite(
        accounts=(WEB_ACCOUNT,), title="Camera console",
        syslog=SyslogReporter(SYSLOG_UDP_PORT, transport="udp", format="rfc3164",
                              app="httpd"))),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **UNMONITORED},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={THROTTLING: FAIL},
    expect_monitored={AUTH_EVENT: PASS, EVENT_TRANSPORT: FAIL},
)

MONITOR_UNREPORTED = Persona(
    name="monitor-unreported",
    description="MQTT over TLS that reports nothing: no security event, no heartbeat, although "
                "its inventory declares a syslog collector and a heartbeat topic",
    device_class="sensor",
    listeners=(TcpListener(8883, ReportingBroker(accounts=(DEVICE_ACCOUNT, MONITOR_ACCOUNT)),
                           tls=True),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **UNMONITORED},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
    expect_monitored={AUTH_EVENT: FAIL, HEARTBEAT: FAIL},
)

MONITOR_THROTTLED = Persona(
    name="monitor-throttled",
    description="MQTT over TLS that tarpits a source after five failed logins in 30 s (0.6 s "
                "before each answer); it declares no monitoring sink",
    device_class="sensor",
    listeners=(_reporting(throttle=Throttle(after=5, delay=0.6, window=30.0)),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **UNMONITORED},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: PASS},
)

PERSONAS = (
    MONITOR_SYSLOG_TLS,
    MONITOR_MQTT_EVENTS,
    MONITOR_CLEARTEXT,
    MONITOR_UNREPORTED,
    MONITOR_THROTTLED,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""

def lab_monitor(persona: str, address: str, cert_file: str, key_file: str,
                monitor_password: Secret) -> dict[str, dict[str, Any]]:
    """The inventory `monitor:` of a device running `persona` at `address`: the probe's TLS
    syslog listener uses `cert_file`/`key_file`; MQTT sinks log in with `monitor_password`
    (MONITOR_ACCOUNT's password, given as a Secret as the inventory would)."""
    tls_syslog = {"listen": f"tls://{address}:{SYSLOG_TLS_PORT}", "cert_file": cert_file,
                  "key_file": key_file}
    udp_syslog = {"listen": f"udp://{address}:{SYSLOG_UDP_PORT}"}
    broker = {"address": address, "port": 8883, "tls": True, "username": MONITOR_ACCOUNT[0],
              "password": monitor_password}
    sinks: dict[str, dict[str, dict[str, Any]]] = {
        "monitor-syslog-tls": {"syslog": tls_syslog},
        "monitor-mqtt-events": {"mqtt": {**broker, "topic": "security/#",
                                         "heartbeat_topic": HEARTBEAT_TOPIC,
                                         "heartbeat_interval": HEARTBEAT_INTERVAL * 2}},
        "monitor-cleartext": {"syslog": udp_syslog},
        "monitor-unreported": {"syslog": udp_syslog,
                               "mqtt": {**broker, "heartbeat_topic": HEARTBEAT_TOPIC,
                                        "heartbeat_interval": HEARTBEAT_INTERVAL * 2}},
    }
    return sinks.get(persona, {})
