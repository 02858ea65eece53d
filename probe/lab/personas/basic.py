"""The first personas: plain TCP and UDP services (Telnet, FTP, SNMP, TFTP, HTTP, VNC), MQTT over
TLS that refuses anonymous clients, a device that never answers and one that is not there."""

from __future__ import annotations

from probe.checks.catalogue import catalogue
from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    ERROR,
    FAIL,
    GOOD_TLS,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    HTTP_DEFAULT_CREDENTIALS,
    MQTT_CHECKS,
    MQTT_DEFAULT_CREDENTIALS,
    NOT_APPLICABLE,
    OPEN_PORTS,
    PAGE_OVER_HTTPS,
    PASS,
    REFUSING_MQTTS,
    TLS_CHECKS,
    Persona,
    every,
)
from probe.lab.personas.remote import TELNET_DEFAULT
from probe.lab.servers import (
    FtpLogin,
    HttpPage,
    MqttRefuse,
    RfbBanner,
    Silent,
    SnmpAgent,
    TcpListener,
    TelnetLogin,
    TftpDenied,
    UdpListener,
)
from probe.model import Verdict


def _mqtts(port: int = 8883) -> TcpListener:
    return TcpListener(port, MqttRefuse(), tls=True)


CLEAN_SENSOR = Persona(
    name="clean-sensor",
    description="MQTT over TLS only, refuses unauthenticated clients; asks for no client "
                "certificate, so mqtt.client-certificate (medium) fails",
    device_class="sensor",
    listeners=(_mqtts(),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **GOOD_TLS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

TELNET_CAMERA = Persona(
    name="telnet-camera",
    description="Telnet login on 23 beside its HTTPS interface",
    device_class="camera",
    listeners=(
        TcpListener(23, TelnetLogin(banner="\r\nIP Camera\r\n")),
        TcpListener(443, HttpPage(title="IP Camera"), tls=True),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, **GOOD_TLS, **PAGE_OVER_HTTPS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: NOT_APPLICABLE, TELNET_DEFAULT: PASS},
)

FTP_GATEWAY = Persona(
    name="ftp-gateway",
    description="FTP on 21 beside its HTTPS console on 8443",
    device_class="gateway",
    listeners=(
        TcpListener(21, FtpLogin(greeting="(gateway) FTP server ready")),
        TcpListener(8443, HttpPage(title="Gateway console"), tls=True),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, **GOOD_TLS, **PAGE_OVER_HTTPS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: NOT_APPLICABLE},
)

SNMP_PUBLIC = Persona(
    name="snmp-public",
    description="SNMP v1/v2c agent answering the community 'public'",
    device_class="sensor",
    listeners=(
        UdpListener(161, SnmpAgent(sys_descr="iotprobe lab sensor, firmware 1.0",
                                   sys_name="snmp-public")),
        _mqtts(),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, **REFUSING_MQTTS, **GOOD_TLS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

TFTP_SENSOR = Persona(
    name="tftp-sensor",
    description="TFTP server on 69/udp (answers every read with File not found)",
    device_class="sensor",
    listeners=(UdpListener(69, TftpDenied()), _mqtts()),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, **REFUSING_MQTTS, **GOOD_TLS},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

EXTRA_PORTS = Persona(
    name="extra-ports",
    description="ports beyond its class's allow-list: plain HTTP on 8080 and VNC on 5900",
    device_class="sensor",
    listeners=(
        _mqtts(),
        TcpListener(8080, HttpPage(title="Sensor status")),
        TcpListener(5900, RfbBanner()),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **GOOD_TLS,
            HTTP_CLEARTEXT: FAIL, HTTP_AUTHENTICATION: FAIL, CLOCK_SYNC: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, HTTP_DEFAULT_CREDENTIALS: NOT_APPLICABLE},
)

HANG = Persona(
    name="hang",
    description="accepts on 23 and 8883 and never says a word",
    device_class="sensor",
    listeners=(TcpListener(23, Silent()), TcpListener(8883, Silent())),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: ERROR, **every(MQTT_CHECKS, ERROR),
            **every(TLS_CHECKS, ERROR)},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: ERROR},
)

DARK = Persona(
    name="dark",
    description="nothing listens: an unreachable device",
    device_class="sensor",
    listeners=(),
    expect=every(tuple(catalogue()), ERROR),  # unreachable: every check, intrusive or not
    expect_verdict=Verdict.INCONCLUSIVE,
)

PERSONAS = (
    CLEAN_SENSOR,
    TELNET_CAMERA,
    FTP_GATEWAY,
    SNMP_PUBLIC,
    TFTP_SENSOR,
    EXTRA_PORTS,
    HANG,
    DARK,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
