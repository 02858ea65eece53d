"""What answers on an open TCP port: one connection per attempt, in an order the port suggests.

Each attempt is bounded by the timeout and reads at most a few KiB. Probing stops at the first
answer that identifies the port, and at the first attempt that meets silence until the deadline
(accepted, not a byte, no close) or a reply that crawls: a hanging device costs about one timeout
per port, not one per attempt. A port is `silent` (nothing about it can be decided) when it never
sent a byte: it hung, reset every connection, or refused the connection it had accepted
during the port scan (the device went away).

`could_serve` says which of the services the checks judge (TLS, HTTP, HTTPS, MQTT, SSH, Telnet) a
port may carry, by the inventory's name for it or else by its number, and `undecided` which of
those an identification left open: the checks turn each of them into an `error` on that port
(see `probe.checks.base`), never into "not applicable".
"""

from __future__ import annotations

import re
import secrets
import ssl
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from probe.context import DeviceContext
from probe.observe.mqtt_codec import connack_level, meaning
from probe.observe.tcp import RESET_AFTER_HANDSHAKE, excerpt, head_hex, service_ports

BANNER_PORTS = frozenset({21, 22, 23, 25, 513, 514, 2323})
HTTP_PORTS = frozenset({80, 81, 8000, 8008, 8080, 8081, 8088, 8888})
TLS_PORTS = frozenset({443, 4443, 5443, 8443, 8883, 8884, 9001, 9443})
MQTT_TLS_PORTS = frozenset({8883, 8884})
RSH_PORTS = {513: "rlogin", 514: "rsh"}
RTSP_PORTS = frozenset({554, 8554})
SERVICES = ("tls", "http", "https", "mqtt", "mqtts", "ssh", "telnet")  # `could_serve`'s names
SERVICE_NAMES = {"tls": "TLS", "http": "cleartext HTTP", "https": "HTTPS",
                 "mqtt": "cleartext MQTT", "mqtts": "MQTT over TLS", "ssh": "SSH",
                 "telnet": "Telnet"}
_NAMED_SERVES = {"http": {"http"}, "https": {"tls", "https"}, "wss": {"tls", "https"},
                 "mqtt": {"mqtt"}, "mqtts": {"tls", "mqtts"}, "tls": {"tls"}, "ssl": {"tls"},
                 "amqps": {"tls"}, "ftps": {"tls"}, "ssh": {"ssh"}, "telnet": {"telnet"}}
_PORT_SERVES = ((MQTT_TLS_PORTS, {"tls", "mqtts"}), (TLS_PORTS, {"tls", "https"}),
                (HTTP_PORTS, {"http"}), (frozenset({1883}), {"mqtt"}),
                (frozenset({22}), {"ssh"}), (frozenset({23, 2323}), {"telnet"}))
_PLANS = {  # first attempt by hint, then the rest
    "banner": ("banner", "tls", "http", "mqtt"), "http": ("http", "tls", "mqtt"),
    "tls": ("tls", "http", "mqtt"), "mqtt": ("mqtt", "tls", "http"),
    "rtsp": ("rtsp", "tls", "http"), "other": ("banner", "tls", "http", "mqtt"),
}
_HINT_BY_NAME = {"telnet": "banner", "ftp": "banner", "ssh": "banner", "smtp": "banner",
                 "http": "http", "https": "tls", "mqtts": "tls", "mqtt": "mqtt", "rtsp": "rtsp"}
READ_CAP = {"banner": 1024, "http": 8192, "rtsp": 4096, "mqtt": 64}
DISCONNECT = b"\xe0\x00"
HANDSHAKE, CERTIFICATE_REQUEST = 22, 13
_PROMPT = re.compile(rb"(login|username|user name|password)\s*:\s*$", re.IGNORECASE)
_STATUS = re.compile(rb"(HTTP|RTSP)/\d(\.\d)? (\d{3})[^\r\n]*")


@dataclass(frozen=True)
class Identification:
    port: int
    protocol: str  # telnet ftp ssh http mqtt smtp rtsp rlogin rsh tls unknown
    tls: bool
    detail: str
    silent: bool
    evidence: Mapping[str, Any]


@dataclass(frozen=True)
class _Reply:
    data: bytes = b""
    stalled: bool = False  # the deadline cut the read short
    tls: Mapping[str, Any] | None = None  # version and cipher of a completed handshake
    alert: str | None = None  # the TLS error that ended the exchange
    certificate_requested: bool = False
    reset: bool = False  # the peer reset the connection before it sent a byte
    tls_error: str | None = None  # why a TLS handshake failed without an alert


class TlsClient:
    """A permissive client context for one connection: identification, not validation.

    It accepts any certificate, TLS 1.0 and every cipher (the TLS checks judge those), and
    notes whether the server sent a CertificateRequest, through the ssl module's message hook
    (CPython's `_msg_callback`; where that hook is missing, the request just goes unseen).
    """

    def __init__(self) -> None:
        self.certificate_requested = False
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.context.minimum_version = ssl.TLSVersion.TLSv1
        self.context.set_ciphers("ALL:@SECLEVEL=0")
        self.context.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
        self.context._msg_callback = self._message  # type: ignore[attr-defined]

    def _message(self, conn: object, direction: str, version: object, content_type: int,
                 msg_type: int, data: bytes) -> None:
        if direction == "read" and content_type == HANDSHAKE and msg_type == CERTIFICATE_REQUEST:
            self.certificate_requested = True


def _host(ctx: DeviceContext, port: int, default: int) -> str:
    host = f"[{ctx.address}]" if ":" in ctx.address else ctx.address
    return host if port == default else f"{host}:{port}"


def _request(ctx: DeviceContext, port: int, kind: str, tls: bool) -> bytes:
    if kind == "http":
        return (f"GET / HTTP/1.1\r\nHost: {_host(ctx, port, 443 if tls else 80)}\r\n"
                "User-Agent: iotprobe\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()
    if kind == "rtsp":
        return (f"OPTIONS rtsp://{_host(ctx, port, 554)}/ RTSP/1.0\r\nCSeq: 1\r\n"
                "User-Agent: iotprobe\r\n\r\n").encode()
    if kind == "mqtt":
        client_id = f"iotprobe-{secrets.token_hex(4)}".encode()
        body = (b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, keep-alive 60 s
                + len(client_id).to_bytes(2, "big") + client_id)
        return b"\x10" + bytes([len(body)]) + body
    return b""


def _complete(kind: str) -> Callable[[bytes], bool]:
    if kind == "mqtt":  # a CONNACK's four bytes, or five when its length takes more than one
        return lambda d: len(d) >= 4 and (d[1] < 0x80 or len(d) >= 5)
    if kind == "banner":
        return lambda d: b"\n" in d or _telnet(d) or bool(_PROMPT.search(d))
    return lambda d: b"\r\n\r\n" in d or b"\n\n" in d


def _telnet(data: bytes) -> bool:
    return len(data) >= 3 and data[0] == 0xFF and 250 <= data[1] <= 254


def _headers(data: bytes) -> dict[str, str]:
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").splitlines()[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


def classify(port: int, kind: str, data: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """(protocol, detail, evidence) that the first bytes of a reply prove, or None."""
    line = excerpt(data.split(b"\n", 1)[0].rstrip(b"\r"))
    if _telnet(data):
        return "telnet", "Telnet option negotiation", {"first_bytes": head_hex(data)}
    if data.startswith(b"SSH-"):
        return "ssh", line, {"banner": line}
    if re.match(rb"220[ -]", data):
        text = data.upper()
        smtp = b"SMTP" in text or (b"FTP" not in text and port in (25, 587))
        how = "" if b"SMTP" in text or b"FTP" in text else f" (220 greeting: port {port} decides)"
        return ("smtp" if smtp else "ftp"), line + how, {"banner": line}
    status = _STATUS.match(data)
    if status:
        protocol = status.group(1).decode().lower()
        status_line = excerpt(status.group(0))
        evidence: dict[str, Any] = {"status_line": status_line, "status": int(status.group(3))}
        if "server" in (headers := _headers(data)):
            evidence["server"] = excerpt(headers["server"].encode("latin-1"))
        return protocol, status_line, evidence
    if kind == "mqtt" and len(data) >= 4 and data[0] == 0x20:
        if not 2 <= data[1] < 0x80:
            problem = _malformed_connack(data)
            return "mqtt", f"malformed MQTT CONNACK: {problem}", {
                "first_bytes": head_hex(data), "malformed": problem}
        code = data[3]
        level = connack_level(4, data[2:2 + data[1]])
        if level == 5:
            return "mqtt", (f"MQTT 5 CONNACK {code} ({meaning(5, code)}) to an MQTT 3.1.1 "
                            "CONNECT"), {"connack_code": code, "protocol_level": 5,
                                         "session_present": bool(data[2] & 1)}
        return "mqtt", f"MQTT 3.1.1 CONNACK {code} ({meaning(4, code)})", {
            "connack_code": code, "protocol_level": 4, "session_present": bool(data[2] & 1)}
    if kind == "banner" and _PROMPT.search(data):
        return "telnet", "login prompt without Telnet negotiation", {"banner": excerpt(data)}
    return None


def _malformed_connack(data: bytes) -> str:
    """What is wrong with the remaining length of a CONNACK that is not 2 to 127 bytes long
    (the answer to a 3.1.1 CONNECT has 2; more than 127 takes a multi-byte length)."""
    length = 0
    for index, byte in enumerate(data[1:5]):
        length |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return f"it claims {length} bytes"
    return "its remaining length runs past the four bytes MQTT allows"


async def _converse(ctx: DeviceContext, port: int, kind: str, *, tls: TlsClient | None,
                    wait: float) -> _Reply:
    request = _request(ctx, port, kind, tls is not None)
    async with ctx.connect(port, tls=tls.context if tls else None,
                           server_hostname=ctx.device.hostname) as (reader, writer):
        info = None
        if tls:
            name, version, _ = writer.get_extra_info("ssl_object").cipher()
            info = {"tls_version": version, "cipher": name}
        try:
            if request:
                writer.write(request)
                await writer.drain()
            data, stalled = await ctx.read(reader, READ_CAP[kind], deadline=wait,
                                           until=_complete(kind))
        except ssl.SSLError as exc:
            return _Reply(tls=info, alert=_reason(exc))
        except ConnectionError as exc:
            return _Reply(tls=info, reset=isinstance(exc, ConnectionResetError))
        if kind == "mqtt" and len(data) >= 4 and data[:2] == b"\x20\x02" and data[3] == 0:
            writer.write(DISCONNECT)
    return _Reply(data, stalled, info)


def _reason(exc: ssl.SSLError) -> str:
    return (exc.reason or str(exc))[:120].replace("_", " ").lower()


def _found(port: int, kind: str, reply: _Reply, tls: bool) -> Identification | None:
    hit = classify(port, kind, reply.data)
    if hit is None:
        return None
    protocol, detail, evidence = hit
    evidence = {"probe": kind, **evidence, **(reply.tls or {})}
    return Identification(port, protocol, tls, detail, False, evidence)


def _tls_only(port: int, reply: _Reply, mqtt_hint: bool) -> Identification:
    """TLS answered but nothing inside was identified (or the handshake was refused)."""
    evidence: dict[str, Any] = {"probe": "tls", **(reply.tls or {})}
    detail = f"TLS ({reply.tls['tls_version']}, {reply.tls['cipher']})" if reply.tls else "TLS"
    if reply.alert:
        evidence["tls_alert"] = reply.alert
        detail += f"; refused: {reply.alert}"
    if reply.certificate_requested or (reply.alert and "certificate required" in reply.alert):
        evidence["client_certificate_required"] = True
        detail += "; client certificate required"
        if mqtt_hint:
            return Identification(port, "mqtt", True, detail + "; MQTT by port convention",
                                  False, evidence)
    return Identification(port, "tls", True, detail, False, evidence)


async def _tls(ctx: DeviceContext, port: int,
               inner: tuple[str, ...]) -> tuple[Identification | None, _Reply]:
    """TLS, then each application protocol inside (a connection each) while the peer answers."""
    found, reply = None, _Reply()
    for app in inner:
        client = TlsClient()
        try:
            reply = await _converse(ctx, port, app, tls=client, wait=ctx.timeout)
        except ssl.SSLError as exc:
            if "alert" not in _reason(exc):  # not TLS, or TLS the client cannot finish
                return None, _Reply(tls_error=_reason(exc))
            reply = _Reply(alert=_reason(exc))
        except (TimeoutError, ConnectionAbortedError):
            return None, _Reply(stalled=True)  # a handshake that never ends
        except ConnectionError as exc:
            if not client.certificate_requested:
                return None, _Reply(reset=isinstance(exc, ConnectionResetError))
        reply = replace(reply, certificate_requested=client.certificate_requested)
        found = _found(port, app, reply, True)
        if found is not None:
            if reply.certificate_requested:
                evidence = {**found.evidence, "client_certificate_requested": True}
                found = replace(found, evidence=evidence)
            break
        if reply.alert or reply.stalled or reply.certificate_requested:
            break
    return found or _tls_only(port, reply, inner[0] == "mqtt"), reply


async def _attempt(ctx: DeviceContext, port: int, kind: str, hint: str,
                   inner: tuple[str, ...]) -> tuple[Identification | None, _Reply]:
    if kind == "tls":
        return await _tls(ctx, port, inner)
    wait = ctx.timeout if kind != "banner" or hint == "banner" else min(1.0, ctx.timeout / 4)
    reply = await _converse(ctx, port, kind, tls=None, wait=wait)
    return _found(port, kind, reply, False), reply


def _hint(ctx: DeviceContext, port: int) -> str:
    named = service_ports(ctx, udp=False).get(port)
    if named in _HINT_BY_NAME:
        return _HINT_BY_NAME[named]
    for hint, ports in (("banner", BANNER_PORTS), ("http", HTTP_PORTS), ("tls", TLS_PORTS)):
        if port in ports:
            return hint
    return "mqtt" if port == 1883 else "rtsp" if port in RTSP_PORTS else "other"


def could_serve(port: int, name: str | None) -> frozenset[str]:
    """The judged services (`SERVICES`) `port` may carry: those of the inventory's name for it
    (none for the name of another service: the inventory said what it is); else those its
    number conventionally carries (SSH on 22, Telnet on 23 and 2323; none for the FTP, SMTP,
    r-command and RTSP ports); else all of them, since nothing tells what an unconventional
    port serves."""
    if name is not None:
        return frozenset(_NAMED_SERVES.get(name, ()))
    for ports, serves in _PORT_SERVES:
        if port in ports:
            return frozenset(serves)
    if port in BANNER_PORTS or port in RSH_PORTS or port in RTSP_PORTS:
        return frozenset()
    return frozenset(SERVICES)


def undecided(ident: Identification, serves: frozenset[str]) -> frozenset[str]:
    """Which of `serves` the identification of the port left open: all of them when nothing
    was identified, unless the port spoke first (a greeting before any request: TLS, HTTP and
    MQTT servers never do); those carried inside TLS (HTTPS, MQTT) when TLS answered but what
    runs in it was not identified (or the handshake was refused); none once a protocol
    answered."""
    if ident.protocol == "unknown":
        return frozenset() if ident.evidence.get("spoke_first") else serves
    if ident.protocol == "tls":
        return serves & {"https", "mqtts"}
    return frozenset()


def conventional(ctx: DeviceContext, port: int) -> bool:
    """Whether the inventory or the port's number says what the port serves."""
    return _hint(ctx, port) != "other"


async def identify(ctx: DeviceContext, port: int) -> Identification:
    """Collector (per port): the protocol that answers on `port`, with what decided it."""
    hint = _hint(ctx, port)
    mqtt_inside = port in MQTT_TLS_PORTS or service_ports(ctx, udp=False).get(port) == "mqtts"
    inner = ("mqtt", "http") if mqtt_inside else ("http", "mqtt")
    tried: list[str] = []
    seen = b""
    tls_error: str | None = None
    spoke_first = False  # the banner attempt got bytes before the probe sent any
    weak: Identification | None = None
    silent = False
    resets = True  # every attempt so far was reset before a byte
    for kind in _PLANS[hint]:
        tried.append(kind)
        try:
            found, reply = await _attempt(ctx, port, kind, hint, inner)
        except ConnectionRefusedError:  # open during the port scan, gone since
            return Identification(port, "unknown", False, "open during the port scan, then "
                                  "refused during identification", True, {"probes": tried})
        except TimeoutError:
            found, reply = None, _Reply(stalled=True)
        except OSError as exc:
            found, reply = None, _Reply(reset=exc.errno in RESET_AFTER_HANDSHAKE)
        if found is not None and found.evidence.get("status") != 400:
            return replace(found, evidence={**found.evidence, "probes": tried})
        weak = weak or found
        seen = seen or reply.data
        tls_error = tls_error or reply.tls_error
        spoke_first = spoke_first or (kind == "banner" and bool(reply.data))
        resets = resets and reply.reset
        quiet_banner = kind == "banner" and hint != "banner" and not reply.data
        if reply.stalled and not quiet_banner:
            silent = not reply.data
            break
    if weak is not None:
        return replace(weak, evidence={**weak.evidence, "probes": tried})
    evidence: dict[str, Any] = {"probes": tried}
    if seen:
        evidence |= {"first_bytes": head_hex(seen), "banner": excerpt(seen)}
    if spoke_first:
        evidence["spoke_first"] = True
    if port in RSH_PORTS:
        name = RSH_PORTS[port]
        return Identification(port, name, False, f"nothing else answered: {name} by port "
                              f"convention ({port}/tcp)", silent, evidence)
    if silent:
        what = f"accepted but never answered within {ctx.timeout:g} s"
    elif not seen and resets:
        what, silent = "accepted, then reset every connection before a byte", True
    else:
        what = "answered, but nothing was identified"
    if tls_error and not silent:
        evidence["tls_error"] = tls_error
        what += f" (the TLS handshake failed: {tls_error})"
    return Identification(port, "unknown", False, what, silent, evidence)
