"""Discovery against real peers on 127.77.x.y: port scans, UDP probes, identification.

Daemons (tests/daemons.py) are real Debian programs; the few behaviours no daemon shows (silence,
a dripping reply, SSDP, mDNS) come from listeners on the test's own event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemons import (
    Listener,
    certificate,
    coap_server,
    drip,
    dropbear,
    greet,
    mosquitto,
    nginx,
    openssl_server,
    reply,
    scan_context,
    silent,
    snmpd,
    telnetd,
    tftpd,
    udp_responder,
    vsftpd,
)
from scapy.layers.dns import DNS, DNSRR

from probe.context import ScanOptions
from probe.model import Device, Service
from probe.observe import identify as identification
from probe.observe.base import ObservationError, Unreachable
from probe.observe.discovery import (
    Identification,
    Services,
    identify,
    services,
    tcp_ports,
    udp_services,
)
from probe.observe.identify import classify, could_serve
from probe.observe.tcp import UDP_SERVICE_NAMES, port_set
from probe.protocols import registry

HEAD_HEX_MAX = 64


def test_the_udp_names_of_the_inventory_are_the_registry_s() -> None:
    """`service_ports` tells TCP from UDP names by `UDP_SERVICE_NAMES` (below the registry, so
    a table of its own): it must name exactly what the registered UDP protocols answer to."""
    assert {name for probe in registry.UDP for name in probe.names} == UDP_SERVICE_NAMES
    assert len({probe.protocol for probe in registry.UDP}) == len(registry.UDP)


def test_the_registry_gives_identification_its_former_tables() -> None:
    """The tables identification built from the protocol packages, as they were written out in
    identification.py before the registry (issue 17), with what issue 21 added (RTSP judged,
    RTSPS on 322, Modbus/TCP, SSH and Telnet judged): hints, plans, read caps, judged
    services."""
    assert identification._PLANS == {
        "banner": ("banner", "tls", "http", "mqtt"), "http": ("http", "tls", "mqtt"),
        "tls": ("tls", "http", "mqtt"), "mqtt": ("mqtt", "tls", "http"),
        "rtsp": ("rtsp", "tls", "http"), "modbus": ("modbus", "tls", "http"),
        "other": ("banner", "tls", "http", "mqtt")}
    assert identification._HINT_BY_NAME == {
        "telnet": "banner", "ftp": "banner", "ssh": "banner", "smtp": "banner", "http": "http",
        "https": "tls", "mqtts": "tls", "rtsps": "tls", "mqtt": "mqtt", "rtsp": "rtsp",
        "modbus": "modbus"}
    assert identification.READ_CAP == {"banner": 1024, "http": 8192, "rtsp": 4096, "mqtt": 64,
                                       "modbus": 260}
    assert identification.SERVICES == ("tls", "http", "https", "mqtt", "mqtts", "rtsp", "ssh",
                                       "telnet")
    assert identification.SERVICE_NAMES == {
        "tls": "TLS", "http": "cleartext HTTP", "https": "HTTPS", "mqtt": "cleartext MQTT",
        "mqtts": "MQTT over TLS", "rtsp": "RTSP", "ssh": "SSH", "telnet": "Telnet"}
    assert [rule.priority for rule in identification._CLASSIFIERS] == [5, 10, 20, 30, 40, 50, 90]
    assert could_serve(8883, None) == {"tls", "mqtts"}  # MQTT over TLS before TLS
    assert could_serve(322, None) == {"tls", "rtsp"}  # RTSPS before TLS
    assert could_serve(443, None) == {"tls", "https"} and could_serve(8080, None) == {"http"}
    assert could_serve(1883, None) == {"mqtt"} and could_serve(554, None) == {"rtsp"}
    assert could_serve(22, None) == {"ssh"} and could_serve(2323, None) == {"telnet"}
    assert could_serve(21, None) == could_serve(514, None) == could_serve(502, None) == set()
    assert could_serve(4000, None) == set(identification.SERVICES) - {"rtsp"}
    assert could_serve(4000, "wss") == {"tls", "https"} and could_serve(4000, "ssh") == {"ssh"}
    assert could_serve(4000, "ftp") == set()
    assert identification._inside_tls(8884, None) == identification._inside_tls(4000, "mqtts") == (
        "mqtt", "http")
    assert identification._inside_tls(443, "https") == ("http", "mqtt")
    assert identification._inside_tls(322, None) == identification._inside_tls(4000, "rtsps") == (
        "rtsp", "http", "mqtt")


def test_port_set_merges_sources_and_never_holds_2024() -> None:
    device = Device(id="d", address="127.77.0.1", services={"mqtt": (1883,), "coap": (5683,)},
                    exclude_ports=(8080,))
    with scan_context("127.77.0.1", (22, 80, 2024, 8080)) as ctx:
        ctx.device = device
        assert port_set(ctx) == (22, 80, 1883)
    with scan_context("127.77.0.1", None) as ctx:
        ctx.device = Device(id="d", address="127.77.0.1", ports=(2024, 443))
        ctx.scan_tcp_ports = (23, 2024)
        assert port_set(ctx) == (443,)
        ctx.device = Device(id="d", address="127.77.0.1")
        assert port_set(ctx) == (23,)


def test_2024_is_only_reserved_on_loopback() -> None:
    with scan_context("192.0.2.1", (2024, 22)) as ctx:  # never contacted: port_set is pure
        ctx.options = ScanOptions(tcp_ports=(2024, 22))
        assert port_set(ctx) == (22, 2024)


async def test_connect_scan_finds_open_and_closed(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.1.1", 8080), scan_context("127.77.1.1", (8080, 8081)) as ctx:
        scan = await tcp_ports(ctx)
    assert scan.method == "connect"
    assert scan.scanned == 2
    assert scan.open == (8080,)
    assert scan.filtered == ()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a SYN scan needs root")
async def test_syn_scan_finds_what_connect_scan_finds(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.1.2", 8080):
        with scan_context("127.77.1.2", (8080, 8081), syn=True) as ctx:
            syn = await tcp_ports(ctx)
        with scan_context("127.77.1.2", (8080, 8081)) as ctx:
            connect = await tcp_ports(ctx)
    assert syn.method == "syn"
    assert syn.open == connect.open == (8080,)
    assert syn.filtered == connect.filtered == ()


async def test_syn_scan_without_root_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with scan_context("127.77.1.3", (8080,), syn=True) as ctx, \
            pytest.raises(ObservationError) as caught:
        await tcp_ports(ctx)
    assert caught.value.reason == "needs-root"


async def test_snmp_agent_with_public_community(tmp_path: Path) -> None:
    with snmpd(tmp_path, "127.77.2.1"), scan_context("127.77.2.1") as ctx:
        found = await udp_services(ctx)
    (snmp,) = found
    assert (snmp.port, snmp.protocol) == (161, "snmp")
    assert snmp.evidence["answered"] == [{"version": "v1", "community": "public"},
                                         {"version": "v2c", "community": "public"}]
    assert snmp.evidence["sysdescr"] == "iotprobe test agent"


async def test_coap_and_dtls(tmp_path: Path) -> None:
    with coap_server(tmp_path, "127.77.2.2", dtls_psk="iotprobe-psk"), \
            scan_context("127.77.2.2") as ctx:
        coap, dtls = await udp_services(ctx)
    assert (coap.port, coap.protocol, coap.evidence["code"]) == (5683, "coap", "2.05")
    assert "</time>" in coap.evidence["resources"]
    assert (dtls.port, dtls.protocol) == (5684, "dtls")
    assert dtls.evidence["record"] in ("handshake", "alert")


async def test_cleartext_coap_server(tmp_path: Path) -> None:
    with coap_server(tmp_path, "127.77.2.3"), scan_context("127.77.2.3") as ctx:
        found = await udp_services(ctx)
    assert [(s.port, s.protocol) for s in found] == [(5683, "coap")]


async def test_tftp_answers_from_another_port(tmp_path: Path) -> None:
    with tftpd(tmp_path, "127.77.2.4"), scan_context("127.77.2.4") as ctx:
        (tftp,) = await udp_services(ctx)
    assert (tftp.port, tftp.protocol) == (69, "tftp")
    assert tftp.evidence["reply"] == "error"
    assert tftp.evidence["file"].startswith("iotprobe-")


async def test_a_closed_tftp_port_is_refused_not_waited_out() -> None:
    """The TFTP request goes out on an unconnected socket (the reply comes from another port),
    yet the kernel's port-unreachable still reaches it: the port is refused, not timed out."""
    with scan_context("127.77.2.5", timeout=30) as ctx:
        answer = await ctx.exchange_udp(69, b"\x00\x01probe\x00octet\x00",
                                        any_source_port=True)
        assert (answer.refused, answer.replies) == (True, ())
        assert await udp_services(ctx) == ()


def _ssdp(request: bytes) -> bytes | None:
    if not request.startswith(b"M-SEARCH * HTTP/1.1"):
        return None
    return (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\n"
            b"USN: uuid:0f7a::upnp:rootdevice\r\nLOCATION: http://127.77.2.5/desc.xml\r\n"
            b"SERVER: Linux/6 UPnP/1.0 camera/1.0\r\n\r\n")


def _mdns(request: bytes) -> bytes | None:
    query = DNS(request)
    answer = DNSRR(rrname=query.qd[0].qname, type="PTR", ttl=10, rdata="_http._tcp.local.")
    return bytes(DNS(id=query.id, qr=1, aa=1, rd=0, qd=query.qd, an=answer))


async def test_ssdp_and_mdns_responders() -> None:
    async with udp_responder("127.77.2.5", 1900, _ssdp), \
            udp_responder("127.77.2.5", 5353, _mdns):
        with scan_context("127.77.2.5") as ctx:
            found = {s.protocol: s for s in await udp_services(ctx)}
    assert found["ssdp"].evidence["st"] == "upnp:rootdevice"
    assert found["ssdp"].evidence["server"] == "Linux/6 UPnP/1.0 camera/1.0"
    assert found["mdns"].evidence["services"] == ["_http._tcp.local."]


async def test_reply_that_is_not_the_protocol_is_unknown() -> None:
    async with udp_responder("127.77.2.6", 5683, lambda request: b"\x00garbage" * 100):
        with scan_context("127.77.2.6") as ctx:
            (unknown,) = await udp_services(ctx)
    assert (unknown.port, unknown.protocol) == (5683, "unknown")
    assert unknown.evidence["first_bytes"] == (b"\x00garbage" * 4).hex()
    assert unknown.evidence["reply_bytes"] == 800


async def test_udp_probing_can_be_turned_off() -> None:
    with scan_context("127.77.2.7", udp=False) as ctx:
        assert await udp_services(ctx) == ()
        assert ctx.datagrams == 0


async def _identify(address: str, port: int, **kwargs: object) -> tuple[Identification, int]:
    with scan_context(address, (port,), **kwargs) as ctx:  # type: ignore[arg-type]
        found = await identify(ctx, port)
        return found, ctx.connections


async def test_identifies_telnet_ftp_and_ssh(tmp_path: Path) -> None:
    with telnetd(tmp_path, "127.77.3.1"), vsftpd(tmp_path, "127.77.3.1"), \
            dropbear(tmp_path, "127.77.3.1"):
        telnet, _ = await _identify("127.77.3.1", 23)
        ftp, _ = await _identify("127.77.3.1", 21)
        ssh, _ = await _identify("127.77.3.1", 22)
    assert telnet.protocol == "telnet"
    assert telnet.evidence["first_bytes"].startswith("ff")
    assert (ftp.protocol, ftp.evidence["banner"]) == ("ftp", "220 (vsFTPd 3.0.3)")
    assert ssh.protocol == "ssh"
    assert ssh.evidence["banner"].startswith("SSH-2.0-dropbear")


async def test_identifies_http_and_https(tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    with nginx(tmp_path, "127.77.3.2", 8080), nginx(tmp_path, "127.77.3.2", 443, cert), \
            nginx(tmp_path, "127.77.3.2", 9080):
        http, _ = await _identify("127.77.3.2", 8080)
        https, _ = await _identify("127.77.3.2", 443)
        odd, _ = await _identify("127.77.3.2", 9080)
    assert (http.protocol, http.tls, http.evidence["status"]) == ("http", False, 200)
    assert http.evidence["server"].startswith("nginx")
    assert (https.protocol, https.tls) == ("http", True)
    assert https.evidence["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert "cipher" in https.evidence
    assert (odd.protocol, odd.tls) == ("http", False)
    assert odd.evidence["probes"] == ["banner", "tls", "http"]


async def test_identifies_mqtt_cleartext_tls_and_mutual_tls(tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    with mosquitto(tmp_path, "127.77.3.3"), mosquitto(tmp_path, "127.77.3.3", 8883, cert), \
            mosquitto(tmp_path, "127.77.3.3", 11883), \
            mosquitto(tmp_path, "127.77.3.4", 8883, cert, require_certificate=True):
        plain, _ = await _identify("127.77.3.3", 1883)
        tls, _ = await _identify("127.77.3.3", 8883)
        odd, _ = await _identify("127.77.3.3", 11883)
        mutual, _ = await _identify("127.77.3.4", 8883)
    assert (plain.protocol, plain.tls, plain.evidence["connack_code"]) == ("mqtt", False, 0)
    assert plain.evidence["protocol_level"] == 4
    assert (tls.protocol, tls.tls, tls.evidence["connack_code"]) == ("mqtt", True, 0)
    assert (odd.protocol, odd.tls) == ("mqtt", False)
    assert (mutual.protocol, mutual.tls) == ("mqtt", True)
    assert mutual.evidence["client_certificate_required"] is True
    assert "port convention" in mutual.detail


async def test_tls_that_requires_a_client_certificate(tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    with openssl_server(tmp_path, "127.77.3.5", 9443, cert, "-Verify", "1", "-CAfile",
                        str(cert.cert)):
        found, connections = await _identify("127.77.3.5", 9443)
    assert (found.protocol, found.tls) == ("tls", True)
    assert found.evidence["client_certificate_required"] is True
    assert "client certificate required" in found.detail
    assert connections == 1


async def test_tls_with_nothing_identified_inside(tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    with openssl_server(tmp_path, "127.77.3.6", 4443, cert):
        found, _ = await _identify("127.77.3.6", 4443)
    assert (found.protocol, found.tls, found.silent) == ("tls", True, False)
    assert found.evidence["tls_version"] in ("TLSv1.2", "TLSv1.3")


async def test_identifies_smtp_and_rtsp_greetings() -> None:
    rtsp_reply = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, PLAY\r\n\r\n"
    async with Listener("127.77.3.7", 25, greet(b"220 mail.example ESMTP ready\r\n")), \
            Listener("127.77.3.7", 554, reply(rtsp_reply)):
        smtp, _ = await _identify("127.77.3.7", 25)
        rtsp, _ = await _identify("127.77.3.7", 554)
    assert smtp.protocol == "smtp"
    assert (rtsp.protocol, rtsp.evidence["status"]) == ("rtsp", 200)


async def test_silent_port_costs_one_attempt() -> None:
    async with Listener("127.77.4.1", 9999, silent), Listener("127.77.4.1", 23, silent):
        other, other_connections = await _identify("127.77.4.1", 9999, timeout=1.0)
        telnet, telnet_connections = await _identify("127.77.4.1", 23, timeout=1.0)
    assert (other.protocol, other.silent) == ("unknown", True)
    assert other.evidence["probes"] == ["banner", "tls"]  # a short banner wait, then one timeout
    assert other_connections == 2
    assert (telnet.protocol, telnet.silent) == ("unknown", True)
    assert telnet_connections == 1


async def test_rlogin_and_rsh_by_port_convention() -> None:
    async with Listener("127.77.4.2", 513, silent), Listener("127.77.4.2", 514, silent):
        rlogin, _ = await _identify("127.77.4.2", 513, timeout=1.0)
        rsh, _ = await _identify("127.77.4.2", 514, timeout=1.0)
    assert (rlogin.protocol, rsh.protocol) == ("rlogin", "rsh")
    assert "port convention" in rlogin.detail


async def test_dripping_and_flooding_peers_are_bounded() -> None:
    async with Listener("127.77.4.3", 9998, drip(b"x", 0.2, 50)), \
            Listener("127.77.4.3", 9997, drip(b"\x01" * 65536, 0.0, 64)):
        dripping, drip_connections = await _identify("127.77.4.3", 9998, timeout=1.0)
        flooding, _ = await _identify("127.77.4.3", 9997, timeout=1.0)
    assert (dripping.protocol, dripping.silent) == ("unknown", False)
    assert dripping.evidence["banner"].startswith("x")
    assert drip_connections == 1
    assert flooding.protocol == "unknown"
    assert len(flooding.evidence["first_bytes"]) <= HEAD_HEX_MAX
    assert len(flooding.evidence["banner"]) <= 4 * 200


async def test_services_collects_and_identifies(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.5.1", 8080), snmpd(tmp_path, "127.77.5.1"), \
            scan_context("127.77.5.1", (8080, 8081)) as ctx:
        found = await ctx.observe(services)
    assert isinstance(found, Services)
    assert found.scan.open == (8080,)
    assert found.tcp_port(8080) is not None and found.tcp_port(8081) is None
    assert found.as_services() == [
        Service("tcp", 8080, "http", False, "HTTP/1.1 200 OK"),
        Service("udp", 161, "snmp", False, found.udp[0].detail),
    ]


async def test_nothing_answers_is_unreachable() -> None:
    with scan_context("127.77.5.2", (22, 80, 443), timeout=1.0) as ctx, \
            pytest.raises(Unreachable) as caught:
        await services(ctx)
    assert caught.value.reason == "unreachable"


def test_a_connack_is_named_in_the_level_it_is_written_in() -> None:
    # An MQTT 5 broker answers the 3.1.1 CONNECT of identification with an MQTT 5 CONNACK
    # (a property length after the two bytes): 0x84 is "unsupported protocol version" there,
    # and an unknown code in the 3.1.1 table.
    five = classify(1883, "mqtt", bytes([0x20, 0x03, 0x00, 0x84, 0x00]))
    assert five is not None
    assert five[1] == "MQTT 5 CONNACK 132 (unsupported protocol version) to an MQTT 3.1.1 CONNECT"
    assert five[2]["protocol_level"] == 5
    four = classify(1883, "mqtt", bytes([0x20, 0x02, 0x00, 0x05]))
    assert four is not None and four[1] == "MQTT 3.1.1 CONNACK 5 (not authorized)"
