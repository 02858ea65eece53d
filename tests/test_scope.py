"""Scope, intrusiveness and rate, proved on the wire: scapy captures the loopback traffic of
a scan (a BPF filter on the lab's /24) and the tests read what the probe really sent.

- scope: two targets of a /24 where six lab devices run; every packet the probe sent went to a
  target and no other device of the range sent or received a single packet;
- intrusiveness: without --intrusive no CoAP write (PUT, POST, DELETE) and no MQTT CONNECT
  with a user name (default-credential guessing) leaves the probe; with --intrusive both do
  (the detector works);
- rate: --rate 20 over a scan of 200 closed ports: the SYN timestamps span at least
  (SYNs - burst) / rate seconds, and no one-second window holds more than burst + rate SYNs.

Sniffing needs root (a packet socket on `lo`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records
from scapy.arch.linux import L2ListenSocket
from scapy.layers.inet import IP, TCP, UDP
from scapy.sendrecv import AsyncSniffer
from test_hostile import Lab, iotprobe, write_profile

from probe.ratelimit import RateLimiter

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="sniffing on lo needs root")]

RANGE = ipaddress.IPv4Network("127.97.5.0/24")
PERSONAS = ("clean-sensor", "mqtt-open-broker", "coap-sensor", "telnet-camera",
            "ftp-gateway", "hang")
TARGETS = ("mqtt-open-broker", "coap-sensor")
MARKER = b"iotprobe-capture-end"
SO_RCVBUFFORCE = 33
RATE_TARGET = "127.97.6.9"
"""Nothing listens there: every port refuses at once, so the rate cap alone paces the scan."""


class Capture:
    """Packets on `lo` to or from `network`, from `start()` to `stop()`.

    `stop()` first sends one datagram to itself at an address of the range (a socket there
    receives it) and lets the sniffer run until it has read that one: every packet before it
    has been read too (a busy machine leaves packets queued in the sniffer's socket, which a
    plain stop would lose). The packet socket gets a 64 MiB buffer (root may force it past
    rmem_max): a scan's bursts outrun scapy's dissection, and the default buffer overflows.
    The marker is left out of the result."""

    def __init__(self, network: str) -> None:
        ready = threading.Event()
        net = ipaddress.ip_network(network)
        self.marker = str(net[-2] if net.num_addresses > 2 else net[0])
        self.listener = L2ListenSocket(iface="lo", filter=f"net {network}")
        self.listener.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.sniffer = AsyncSniffer(opened_socket=self.listener, store=True,
                                    started_callback=ready.set, stop_filter=self._is_marker)
        self.sniffer.start()
        assert ready.wait(30), "the sniffer did not start"

    def _is_marker(self, packet: Any) -> bool:
        return bool(packet.haslayer(UDP) and packet[IP].dst == self.marker
                    and bytes(packet[UDP].payload) == MARKER)

    def stop(self) -> list[Any]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            receiver.bind((self.marker, 9))  # received, so no port-unreachable comes back
            sender.bind((self.marker, 0))
            sender.sendto(MARKER, (self.marker, 9))
            self.sniffer.join(30)
        if self.sniffer.running:
            self.sniffer.stop()
        self.listener.close()
        return [p for p in self.sniffer.results or [] if p.haslayer(IP)
                and not self._is_marker(p)]


def in_range(address: str) -> bool:
    return ipaddress.ip_address(address) in RANGE


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = Lab(tmp_path_factory.mktemp("scope"), str(RANGE.network_address + 1), PERSONAS)
    try:
        yield running
    finally:
        running.down()


def scan(lab: Lab, tmp_path: Path, targets: Sequence[str], *extra: str) -> list[Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    capture = Capture(str(RANGE))
    try:
        run = iotprobe("scan", *targets, "-p", str(write_profile(tmp_path)), "-o",
                       str(tmp_path / "out"), "--timeout", "1", "--exclude-ports", "2024",
                       "--trust-anchor", lab.trust_anchor, "-q", *extra)
    finally:
        packets = capture.stop()
    assert run.returncode in (1, 3), run.stderr
    return packets


def mqtt_connect_flags(payload: bytes) -> int | None:
    """The connect flags of an MQTT CONNECT at the start of `payload`, else None."""
    if len(payload) < 2 or payload[0] != 0x10:
        return None
    at = 1
    for _ in range(4):
        if at >= len(payload):
            return None
        at += 1
        if not payload[at - 1] & 0x80:
            break
    name_length = int.from_bytes(payload[at:at + 2], "big")
    flags_at = at + 2 + name_length + 1
    return payload[flags_at] if flags_at < len(payload) else None


def writes(packets: Sequence[Any]) -> dict[str, int]:
    """The probe's intrusive traffic in a capture: CoAP requests that write and MQTT CONNECTs
    that carry a user name."""
    found = {"coap-write": 0, "mqtt-login": 0}
    for packet in packets:
        if in_range(packet[IP].src):
            continue
        if packet.haslayer(UDP) and packet[UDP].dport == 5683:
            payload = bytes(packet[UDP].payload)
            if len(payload) >= 2 and payload[1] in (0x02, 0x03, 0x04):
                found["coap-write"] += 1
        if packet.haslayer(TCP) and packet[TCP].dport == 1883:
            flags = mqtt_connect_flags(bytes(packet[TCP].payload))
            if flags is not None and flags & 0x80:
                found["mqtt-login"] += 1
    return found


def test_the_probe_touches_only_its_targets(lab: Lab, tmp_path: Path) -> None:
    targets = [lab.address(p) for p in TARGETS]
    packets = scan(lab, tmp_path, targets)
    others = {d["address"] for d in lab.devices.values()} - set(targets)
    assert len(others) == len(PERSONAS) - len(TARGETS)
    sent = [p for p in packets if not in_range(p[IP].src)]
    strays = {(p[IP].src, p[IP].dst) for p in sent if p[IP].dst not in targets}
    assert strays == set(), "the probe sent packets to addresses it was not given"
    touched = {p[IP].src for p in packets if in_range(p[IP].src)} | \
        {p[IP].dst for p in packets if in_range(p[IP].dst)}
    assert touched == set(targets), f"other lab devices were touched: {touched - set(targets)}"
    for target in targets:  # the capture saw the scan: connections and datagrams to each
        assert any(p.haslayer(TCP) and p[TCP].flags == "S" and p[IP].dst == target
                   for p in sent)
        assert any(p.haslayer(UDP) and p[IP].dst == target for p in sent)


def test_intrusive_checks_need_intrusive(lab: Lab, tmp_path: Path) -> None:
    targets = [lab.address(p) for p in TARGETS]
    quiet = scan(lab, tmp_path / "quiet", targets)
    assert writes(quiet) == {"coap-write": 0, "mqtt-login": 0}
    records = load_records(tmp_path / "quiet" / "out")
    assert len(records) == 2
    for record in records.values():
        assert record["probe"]["intrusive"] is False
        intrusive = {r["check"] for r in record["results"]
                     if r["evidence"].get("reason") == "intrusive"}
        assert intrusive >= {"mqtt.default-credentials", "coap.unauthenticated-write"}
        assert all(r["status"] == "skipped" for r in record["results"]
                   if r["check"] in intrusive)
    loud = scan(lab, tmp_path / "loud", targets, "--intrusive")
    found = writes(loud)
    assert found["coap-write"] > 0 and found["mqtt-login"] > 0, found


def test_the_rate_cap_holds_on_the_wire(tmp_path: Path) -> None:
    rate, ports = 20, 200
    burst = RateLimiter(rate).burst
    capture = Capture(f"{RATE_TARGET}/32")
    try:
        run = iotprobe("scan", RATE_TARGET, "-p", str(write_profile(tmp_path)), "-o",
                       str(tmp_path / "out"), "--ports", f"3000-{3000 + ports - 1}",
                       "--exclude-ports", "2024", "--no-udp", "--rate", str(rate),
                       "--timeout", "1", "-q")
    finally:
        packets = capture.stop()
    assert run.returncode == 3, run.stderr
    first_seen: dict[tuple[int, int], float] = {}
    for packet in packets:
        if packet.haslayer(TCP) and packet[IP].dst == RATE_TARGET and packet[TCP].flags == "S":
            key = (int(packet[TCP].sport), int(packet[TCP].dport))
            first_seen.setdefault(key, float(packet.time))
    stamps = sorted(first_seen.values())
    syns = len(stamps)
    assert syns >= ports * 0.9, f"the capture holds {syns} SYNs for {ports} ports"
    span = stamps[-1] - stamps[0]
    print(f"{syns} SYNs over {span:.2f} s at --rate {rate} (burst {burst}): at least "
          f"{(syns - burst) / rate:.2f} s expected")
    assert span >= (syns - burst) / rate - 0.25, (syns, span)
    for index, start in enumerate(stamps):
        within = sum(1 for t in stamps[index:] if t - start < 1.0)
        assert within <= burst + rate + 2, (start, within)  # 2: timestamp jitter
