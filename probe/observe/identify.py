"""What answers on an open TCP port: one connection per attempt, in an order the port suggests.

Each attempt is bounded by the timeout and reads at most a few KiB. Probing stops at the first
answer that identifies the port, and at the first attempt that meets silence until the deadline
(accepted, not a byte, no close) or a reply that crawls: a hanging device costs about one timeout
per port, not one per attempt. A port is `silent` (nothing about it can be decided) when it never
sent a byte: it hung, reset every connection, or refused the connection it had accepted
during the port scan (the device went away).

`could_serve` says which of the services the checks judge (TLS, HTTP, HTTPS, MQTT, RTSP, SSH,
Telnet) a port may carry, by the inventory's name for it or else by its number, and
`undecided` which of those an identification left open: the checks turn each of them into an
`error` on that port (see `probe.checks.base`), never into "not applicable".

What each protocol contributes (its ports and names, the request it sends, the rules that read
an answer, the services it defines) is in its package's `ident.py`, listed by
`probe.protocols.registry.TCP`; this module builds its tables from that list and keeps the
algorithm: the order of attempts, the stop rules, TLS and the protocols inside it.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from probe.context import DeviceContext
from probe.observe.tcp import RESET_AFTER_HANDSHAKE, excerpt, head_hex, service_ports
from probe.protocols.base import Hit
from probe.protocols.registry import TCP

UNHINTED = ("banner", "tls", "http", "mqtt")
"""The attempts on a port that neither the inventory nor convention names."""
INSIDE_TLS = ("http", "mqtt")
"""The protocols tried inside TLS, in this order unless one claims the port (`inside_tls`)."""
CARRIED_IN_TLS = frozenset({"https", "mqtts", "rtsp"})
"""The judged services TLS may carry: left open when TLS answered and nothing inside did."""
_PLANS = {ident.name: ident.plan for ident in TCP if ident.plan} | {"other": UNHINTED}
_HINT_BY_NAME = {name: ident.name for ident in TCP for name in ident.names}
_PROBES = {ident.probe.kind: ident.probe for ident in TCP if ident.probe is not None}
READ_CAP = {kind: probe.read_cap for kind, probe in _PROBES.items()}
_CLASSIFIERS = sorted((rule for ident in TCP for rule in ident.classifiers),
                      key=lambda rule: rule.priority)
SERVICE_NAMES = {service: name for ident in TCP for service, name in ident.judged.items()}
SERVICES = tuple(SERVICE_NAMES)  # what `could_serve` names, in order
ANY_PORT = frozenset(service for ident in TCP if ident.anywhere for service in ident.judged)
"""What a port nothing names may carry (see `TcpIdent.anywhere`)."""
_NAMED_SERVES = {name: serves for ident in TCP for name, serves in ident.serves_by_name.items()}
_PORT_SERVES = tuple((ports, serves) for _, ports, serves in sorted(
    (entry for ident in TCP for entry in ident.serves_by_port), key=lambda entry: entry[0]))
_BY_CONVENTION = {port: name for ident in TCP for port, name in ident.by_convention.items()}
DISCONNECT = b"\xe0\x00"
HANDSHAKE, CERTIFICATE_REQUEST = 22, 13


@dataclass(frozen=True)
class Identification:
    port: int
    protocol: str  # telnet ftp ssh http mqtt smtp rtsp modbus rlogin rsh tls unknown
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


def _request(ctx: DeviceContext, port: int, kind: str, tls: bool) -> bytes:
    probe = _PROBES.get(kind)
    return probe.request(ctx.address, port, tls) if probe is not None else b""


def classify(port: int, kind: str, data: bytes) -> Hit | None:
    """(protocol, detail, evidence) that the first bytes of a reply prove, or None: the first
    hit of the registered classifiers, by priority."""
    for rule in _CLASSIFIERS:
        if rule.kinds is None or kind in rule.kinds:
            hit = rule.classify(port, data)
            if hit is not None:
                return hit
    return None


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
                                           until=_PROBES[kind].complete)
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
    return next((ident.name for ident in TCP if port in ident.ports), "other")


def could_serve(port: int, name: str | None) -> frozenset[str]:
    """The judged services (`SERVICES`) `port` may carry: those of the inventory's name for it
    (none for the name of another service: the inventory said what it is); else those its
    number conventionally carries (SSH on 22, Telnet on 23 and 2323; none for the FTP, SMTP,
    r-command and Modbus ports); else all of those that may sit anywhere (`ANY_PORT`: not
    RTSP), since nothing tells what an unconventional port serves."""
    if name is not None:
        return _NAMED_SERVES.get(name, frozenset())
    for ports, serves in _PORT_SERVES:
        if port in ports:
            return serves
    return ANY_PORT


def undecided(ident: Identification, serves: frozenset[str]) -> frozenset[str]:
    """Which of `serves` the identification of the port left open: all of them when nothing
    was identified, unless the port spoke first (a greeting before any request: TLS, HTTP and
    MQTT servers never do); those carried inside TLS (HTTPS, MQTT) when TLS answered but what
    runs in it was not identified (or the handshake was refused); none once a protocol
    answered."""
    if ident.protocol == "unknown":
        return frozenset() if ident.evidence.get("spoke_first") else serves
    if ident.protocol == "tls":
        return serves & CARRIED_IN_TLS
    return frozenset()


def _inside_tls(port: int, name: str | None) -> tuple[str, ...]:
    """The protocols tried inside TLS on `port`: the one that claims it first, if any."""
    first = next((ident.name for ident in TCP if port in ident.inside_tls
                  or name in ident.names_inside_tls), None)
    return INSIDE_TLS if first is None else (first, *(p for p in INSIDE_TLS if p != first))


def conventional(ctx: DeviceContext, port: int) -> bool:
    """Whether the inventory or the port's number says what the port serves."""
    return _hint(ctx, port) != "other"


async def identify(ctx: DeviceContext, port: int) -> Identification:
    """Collector (per port): the protocol that answers on `port`, with what decided it."""
    hint = _hint(ctx, port)
    inner = _inside_tls(port, service_ports(ctx, udp=False).get(port))
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
    if port in _BY_CONVENTION:
        name = _BY_CONVENTION[port]
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
