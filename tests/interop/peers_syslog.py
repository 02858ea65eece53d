"""The SYSLOG peers of the interoperability matrix (see `interop`).

A device here is lighttpd with Basic auth on /admin (port 8080): its error log, which names the
user of a refused login (`password doesn't match for /admin username: NONCE`), is piped to a
syslog sender that delivers it to the probe's declared sink on the device's own address:
- util-linux `logger` straight to the sink over UDP (RFC 3164); not over TCP: logger connects
  once when lighttpd starts it, before the probe's sink listens, and gives up;
- `logger` over UDP to rsyslog on the device's address, which forwards over UDP, TCP or TLS
  (RFC 5425, GnuTLS, RFC 5424 frames);
- `logger` over UDP to syslog-ng on the device's address, which forwards over UDP, TCP or TLS
  (OpenSSL, verifying the sink's certificate against it as CA file) with its `network()`
  driver: RFC 3164 messages, LF-terminated on streams (RFC 6587 non-transparent framing).
  syslog-ng opens its TLS session lazily, with the first message, not on connecting, and
  reads nothing from it while idle: it loses the first event written into the dead
  session to the previous scan's sink, and the probe's second login is then heard;
- or nowhere (the error log goes to a file): the device reports nothing.
Every sender sends from 127.0.0.1 on loopback, declared as the relay it stands for
(`monitor.syslog.forwarders`). No reference tool reads a syslog sink, so there is none.

syslog-ng is not installed (Debian's syslog-ng-core conflicts with rsyslog): scripts/setup.sh
unpacks its package into .cache/interop/syslog-ng, and it runs from there as our child, with
its persist file, pid file and control socket in the peer's directory and no system source.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from daemons import certificate, start

from interop import REPO, Peer, Protocol, Setup, debian_version
from probe.model import Status

WEB_PORT = 8080
SINK_PORT = 6514
RELAY_PORT = 5514
LOOPBACK_SENDER = ["127.0.0.1"]
AUTH = "monitor.auth-failure-event"
TRANSPORT = "monitor.event-transport"
Transport = Literal["udp", "tcp", "tls"]
SYSLOG_NG = REPO / ".cache" / "interop" / "syslog-ng"


def _lighttpd(tmp: Path, address: str, errorlog: str) -> contextlib.AbstractContextManager[object]:
    """lighttpd in the foreground on address:8080; /admin asks for Basic credentials."""
    (tmp / "www" / "admin").mkdir(parents=True, exist_ok=True)
    (tmp / "www" / "admin" / "index.html").write_text("settings\n")
    users = tmp / "users"
    users.write_text("admin:web-Kq2-secret\n")
    conf = tmp / "lighttpd.conf"
    conf.write_text("\n".join([
        'server.modules = ("mod_auth", "mod_authn_file")',
        f'server.document-root = "{tmp / "www"}"', f'server.bind = "{address}"',
        f"server.port = {WEB_PORT}", f'server.pid-file = "{tmp}/lighttpd.pid"',
        f'server.errorlog = "{errorlog}"', 'auth.backend = "plain"',
        f'auth.backend.plain.userfile = "{users}"',
        'auth.require = ("/admin" => ("method" => "basic", "realm" => "device", '
        '"require" => "valid-user"))', ""]))
    return start("lighttpd", ["lighttpd", "-D", "-f", str(conf)], tmp, address,
                 [(WEB_PORT, "tcp")])


def _logger(address: str, port: int) -> str:
    """lighttpd's piped error log: one RFC 3164 datagram per line."""
    return f"|/usr/bin/logger -d -n {address} -P {port} --rfc3164 -t lighttpd"


def _sink(tmp: Path, address: str, transport: Transport) -> dict[str, object]:
    sink: dict[str, object] = {"listen": f"{transport}://{address}:{SINK_PORT}",
                               "forwarders": LOOPBACK_SENDER}
    if transport == "tls":
        pki = certificate(tmp, "sink")
        sink.update(cert_file=str(pki.cert), key_file=str(pki.key))
    return sink


def _inventory(sink: dict[str, object]) -> Setup:
    return Setup({"ports": str(WEB_PORT), "monitor": {"syslog": sink}})


def _rsyslog(tmp: Path, address: str, transport: Transport, ca: str | None
             ) -> contextlib.AbstractContextManager[object]:
    """rsyslogd in the foreground: UDP in on address:RELAY_PORT, forwarded to the sink."""
    work = tmp / "rsyslog"
    work.mkdir(exist_ok=True)
    tls = ('StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="anon" '
           if transport == "tls" else "")
    protocol = "udp" if transport == "udp" else "tcp"
    framing = 'TCP_Framing="octet-counted" ' if protocol == "tcp" else ""
    drivers = (f' defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{ca}"'
               if ca else "")
    (work / "rsyslog.conf").write_text("\n".join([
        f'global(workDirectory="{work}"{drivers})', 'module(load="imudp")',
        f'input(type="imudp" address="{address}" port="{RELAY_PORT}")',
        f'action(type="omfwd" target="{address}" port="{SINK_PORT}" protocol="{protocol}" '
        f'{tls}{framing}template="RSYSLOG_SyslogProtocol23Format" '
        # the probe's sink listens only while it scans: queue, and retry every second
        'queue.type="LinkedList" action.resumeRetryCount="-1" action.resumeInterval="1")',
        ""]))
    argv = ["rsyslogd", "-n", "-f", str(work / "rsyslog.conf"), "-i", str(work / "rsyslogd.pid")]
    return start("rsyslogd", argv, tmp, address, [(RELAY_PORT, "udp")])


def _syslog_ng_modules() -> Path:
    """The unpacked package's module directory, named by its major.minor version (`3.38`)."""
    modules = [path for path in (SYSLOG_NG / "usr" / "lib" / "syslog-ng").glob("[0-9]*.[0-9]*")
               if path.is_dir()]
    if len(modules) != 1:
        raise FileNotFoundError(f"no syslog-ng under {SYSLOG_NG}: run scripts/setup.sh")
    return modules[0]


def syslog_ng_version() -> str:
    """The unpacked syslog-ng-core package's Debian version, from its control file."""
    control = SYSLOG_NG / "DEBIAN" / "control"
    if not control.is_file():
        return "not installed"
    for line in control.read_text().splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "not installed"


def _syslog_ng(tmp: Path, address: str, transport: Transport, ca: str | None
               ) -> contextlib.AbstractContextManager[object]:
    """syslog-ng in the foreground: UDP in on address:RELAY_PORT, forwarded to the sink."""
    work = tmp / "syslog-ng"
    work.mkdir(exist_ok=True)
    modules = _syslog_ng_modules()
    tls = f' tls(ca-file("{ca}") peer-verify(required-trusted))' if ca else ""
    (work / "syslog-ng.conf").write_text("\n".join([
        f"@version: {modules.name}",
        # no name lookups; the sink listens only while the probe scans: reconnect every second
        "options { use-dns(no); dns-cache(no); stats-freq(0); time-reopen(1); };",
        f'source s_relay {{ network(ip("{address}") port({RELAY_PORT}) transport("udp")); }};',
        f'destination d_sink {{ network("{address}" port({SINK_PORT}) '
        f'transport("{transport}"){tls}); }};',
        "log { source(s_relay); destination(d_sink); };", ""]))
    argv = [str(SYSLOG_NG / "usr" / "sbin" / "syslog-ng"), "-F", "-e",
            "-f", str(work / "syslog-ng.conf"), f"--module-path={modules}",
            f"--persist-file={work / 'syslog-ng.persist'}",
            f"--pidfile={work / 'syslog-ng.pid'}", f"--control={work / 'syslog-ng.ctl'}"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(modules.parent)}
    return start("syslog-ng", argv, tmp, address, [(RELAY_PORT, "udp")], env=env)


def logger_peer(transport: Literal["udp"]) -> Peer:
    @contextlib.contextmanager
    def run(tmp: Path, address: str) -> Iterator[Setup]:
        with _lighttpd(tmp, address, _logger(address, SINK_PORT)):
            yield _inventory(_sink(tmp, address, transport))

    return Peer(Protocol.SYSLOG, "lighttpd + logger (util-linux)", debian_version("bsdutils"),
                f"failed logins over {transport.upper()}", run,
                {AUTH: Status.PASS, TRANSPORT: Status.FAIL})


Relay = Callable[[Path, str, Transport, str | None], contextlib.AbstractContextManager[object]]


def _relayed(relay: Relay, transport: Transport
             ) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    """lighttpd's failed logins through `relay` (rsyslog or syslog-ng on the device's address)
    to the probe's sink over `transport`."""
    @contextlib.contextmanager
    def run(tmp: Path, address: str) -> Iterator[Setup]:
        sink = _sink(tmp, address, transport)
        ca = str(sink["cert_file"]) if transport == "tls" else None
        with relay(tmp, address, transport, ca), \
                _lighttpd(tmp, address, _logger(address, RELAY_PORT)):
            yield _inventory(sink)

    return run


def rsyslog_peer(transport: Transport) -> Peer:
    run = _relayed(_rsyslog, transport)
    return Peer(Protocol.SYSLOG, "lighttpd + rsyslog", debian_version("rsyslog"),
                f"failed logins forwarded over {transport.upper()}", run,
                {AUTH: Status.PASS,
                 TRANSPORT: Status.PASS if transport == "tls" else Status.FAIL})


def syslog_ng_peer(transport: Transport) -> Peer:
    run = _relayed(_syslog_ng, transport)
    return Peer(Protocol.SYSLOG, "lighttpd + syslog-ng", syslog_ng_version,
                f"failed logins forwarded over {transport.upper()}", run,
                {AUTH: Status.PASS,
                 TRANSPORT: Status.PASS if transport == "tls" else Status.FAIL})


@contextlib.contextmanager
def _silent(tmp: Path, address: str) -> Iterator[Setup]:
    sink = _sink(tmp, address, "tls")
    with _rsyslog(tmp, address, "tls", str(sink["cert_file"])), \
            _lighttpd(tmp, address, str(tmp / "error.log")):
        yield _inventory(sink)


PEERS: list[Peer] = [
    rsyslog_peer("tls"),
    rsyslog_peer("tcp"),
    rsyslog_peer("udp"),
    logger_peer("udp"),
    syslog_ng_peer("tls"),
    syslog_ng_peer("tcp"),
    syslog_ng_peer("udp"),
    Peer(Protocol.SYSLOG, "lighttpd + rsyslog", debian_version("rsyslog"),
         "error log to a file: nothing reported over TLS", _silent,
         {AUTH: Status.FAIL, TRANSPORT: Status.SKIPPED}),
]
