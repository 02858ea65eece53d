"""The first personas: plain TCP and UDP services (Telnet, FTP, SNMP, TFTP, HTTP, VNC), MQTT over
TLS that refuses anonymous clients, a device that never answers and one that is not there."""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    GOOD_TLS,
    NO_MQTT,
    NO_WEB,
    OPEN_PORTS,
    PAGE_OVER_HTTPS,
    REFUSING_MQTTS,
    Persona,
    mqtt_expect,
    tls_expect,
    web_expect,
)
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


def _mqtts(port: int = 8883) -> TcpListener:
    return TcpListener(port, MqttRefuse(), tls=True)


CLEAN_SENSOR = Persona(
    name="clean-sensor",
    description="MQTT over TLS only, refuses unauthenticated clients; asks for no client "
                "certificate, so mqtt.client-certificate (medium) fails",
    device_class="sensor",
    listeners=(_mqtts(),),
    expect={OPEN_PORTS: "pass", CLEARTEXT_MANAGEMENT: "pass", **REFUSING_MQTTS, **GOOD_TLS,
            **NO_WEB},
    expect_verdict="nonconformant",
)

TELNET_CAMERA = Persona(
    name="telnet-camera",
    description="Telnet login on 23 beside its HTTPS interface",
    device_class="camera",
    listeners=(
        TcpListener(23, TelnetLogin(banner="\r\nIP Camera\r\n")),
        TcpListener(443, HttpPage(title="IP Camera"), tls=True),
    ),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "fail", **NO_MQTT, **GOOD_TLS,
            **PAGE_OVER_HTTPS, "telnet.default-credentials": "skipped"},
    expect_verdict="nonconformant",
)

FTP_GATEWAY = Persona(
    name="ftp-gateway",
    description="FTP on 21 beside its HTTPS console on 8443",
    device_class="gateway",
    listeners=(
        TcpListener(21, FtpLogin(greeting="(gateway) FTP server ready")),
        TcpListener(8443, HttpPage(title="Gateway console"), tls=True),
    ),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "fail", **NO_MQTT, **GOOD_TLS,
            **PAGE_OVER_HTTPS},
    expect_verdict="nonconformant",
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
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "fail", **REFUSING_MQTTS, **GOOD_TLS,
            **NO_WEB},
    expect_verdict="nonconformant",
)

TFTP_SENSOR = Persona(
    name="tftp-sensor",
    description="TFTP server on 69/udp (answers every read with File not found)",
    device_class="sensor",
    listeners=(UdpListener(69, TftpDenied()), _mqtts()),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "fail", **REFUSING_MQTTS, **GOOD_TLS,
            **NO_WEB},
    expect_verdict="nonconformant",
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
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "pass", **REFUSING_MQTTS, **GOOD_TLS,
            **web_expect(cleartext="fail", authentication="fail", clock="fail")},
    expect_verdict="nonconformant",
)

HANG = Persona(
    name="hang",
    description="accepts on 23 and 8883 and never says a word",
    device_class="sensor",
    listeners=(TcpListener(23, Silent()), TcpListener(8883, Silent())),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "error",
            **mqtt_expect("error", "error", "error", "error"), **tls_expect("error"),
            **NO_WEB},
    expect_verdict="nonconformant",
)

DARK = Persona(
    name="dark",
    description="nothing listens: an unreachable device",
    device_class="sensor",
    listeners=(),
    expect={OPEN_PORTS: "error", CLEARTEXT_MANAGEMENT: "error",
            **mqtt_expect("error", "error", "error", "error", "error"), **tls_expect("error"),
            **web_expect("error", default_credentials="error")},
    expect_verdict="inconclusive",
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
