"""Real peers for the tests: Debian daemons started as children on one 127.x address.

Each starter writes the daemon's configuration under a temporary directory, starts it with
subprocess.Popen (foreground mode, so the PID is the daemon's), waits until the kernel shows its
socket bound (read from /proc/net, no probe traffic), and returns a `Daemon` that stops it by
PID: terminate, wait, kill if it lingers, wait. Never pkill, never a daemon that forks away.
Readiness and shutdown are bounded in time. Where no Debian daemon shows a behaviour (a port
that accepts and stays silent, a reply that drips, SSDP, mDNS) `Listener` and `UdpResponder`
serve it from the test's own event loop.

Debian packages: busybox-static, vsftpd, snmpd, mosquitto, nginx, openssl, libcoap3-bin,
tftpd-hpa, dropbear-bin, rsyslog, rsyslog-gnutls, bsdutils (logger), lighttpd and its
lighttpd-mod-{wolfssl,mbedtls,gnutls,openssl} modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import functools
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, Network, ScanOptions
from probe.lab.servers_tls import Issued, issue_certificate
from probe.model import Device

RESERVED_PORT = 2024
READY_TIMEOUT = 15.0


class DaemonError(RuntimeError):
    pass


class Daemon:
    """A daemon running as our child; `stop()` (or leaving the `with` block) ends it by PID."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until(self, ready: Callable[[], bool], what: str) -> Daemon:
        end = time.monotonic() + READY_TIMEOUT
        while not ready():
            if self.process.poll() is not None or time.monotonic() > end:
                self.stop()
                raise DaemonError(f"{self.name} never {what}: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _proc_address(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return f"{ip.packed[::-1].hex().upper()}:{port:04X}"
    words = [ip.packed[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4)]
    return f"{''.join(words)}:{port:04X}"


def bound(address: str, port: int, transport: str) -> bool:
    """Whether a socket is bound to address:port (TCP: listening), per /proc/net."""
    if port == RESERVED_PORT:
        raise ValueError("port 2024 belongs to the machine")
    table = transport + ("6" if ":" in address else "")
    want = _proc_address(address, port)
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and (transport == "udp" or fields[3] == "0A"):
            return True
    return False


def start(name: str, argv: list[str], tmp: Path, address: str, ports: list[tuple[int, str]],
          env: dict[str, str] | None = None) -> Daemon:
    """Start `argv` and wait until each (port, transport) is bound on `address`."""
    daemon = Daemon(name, argv, tmp / f"{name}.log", env=env, cwd=tmp)
    for port, transport in ports:
        daemon.wait_until(functools.partial(bound, address, port, transport),
                          f"bound {transport}/{port} on {address}")
    return daemon


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def certificate(tmp: Path, name: str = "device") -> Certificate:
    """A self-signed P-256 certificate (it is its own CA, for client-certificate setups too)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    paths = Certificate(tmp / f"{name}.crt", tmp / f"{name}.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


def telnetd(tmp: Path, address: str, port: int = 23) -> Daemon:
    """busybox telnetd; the 'login' program is /bin/false, so no session is ever given."""
    argv = ["busybox", "telnetd", "-F", "-K", "-p", str(port), "-b", address, "-l", "/bin/false"]
    return start("telnetd", argv, tmp, address, [(port, "tcp")])


def vsftpd(tmp: Path, address: str, port: int = 21) -> Daemon:
    empty = tmp / "ftp-empty"
    empty.mkdir(exist_ok=True)
    conf = tmp / "vsftpd.conf"
    conf.write_text("\n".join([
        "listen=YES", "listen_ipv6=NO", f"listen_address={address}", f"listen_port={port}",
        "background=NO", "anonymous_enable=YES", f"anon_root={empty}", "ftp_username=nobody",
        "local_enable=NO", "write_enable=NO", "isolate=NO", "isolate_network=NO",
        "seccomp_sandbox=NO", f"secure_chroot_dir={empty}", "xferlog_enable=NO", "",
    ]))
    return start("vsftpd", ["vsftpd", str(conf)], tmp, address, [(port, "tcp")])


def snmpd(tmp: Path, address: str, port: int = 161, community: str = "public") -> Daemon:
    conf = tmp / "snmpd.conf"
    conf.write_text(f"rocommunity {community} 127.0.0.0/8\nsysDescr iotprobe test agent\n")
    persist = tmp / "snmp-persist"
    persist.mkdir(exist_ok=True)
    argv = ["snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(tmp / "snmpd.pid"),
            f"udp:{address}:{port}"]
    return start("snmpd", argv, tmp, address, [(port, "udp")],
                 env={"SNMP_PERSISTENT_DIR": str(persist), "PATH": "/usr/sbin:/usr/bin:/bin"})


def mosquitto(tmp: Path, address: str, port: int = 1883, tls: Certificate | None = None,
              require_certificate: bool = False) -> Daemon:
    lines = [f"listener {port} {address}", "allow_anonymous true", "user root",
             "persistence false", "log_dest stdout"]
    if tls is not None:
        lines += [f"certfile {tls.cert}", f"keyfile {tls.key}"]
    if require_certificate and tls is not None:
        lines += [f"cafile {tls.cert}", "require_certificate true"]
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return start("mosquitto", ["mosquitto", "-c", str(conf)], tmp, address, [(port, "tcp")])


def nginx(tmp: Path, address: str, port: int, tls: Certificate | None = None) -> Daemon:
    """nginx in the foreground as one process, answering 200 on every path."""
    root = tmp / f"nginx-{port}"
    root.mkdir(exist_ok=True)
    listen = f"{address}:{port}" + (" ssl" if tls else "")
    certs = f"ssl_certificate {tls.cert}; ssl_certificate_key {tls.key};" if tls else ""
    temps = " ".join(f"{kind}_temp_path {root}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        f"daemon off; master_process off; pid {root}/nginx.pid; error_log {root}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; {temps}\n"
        f"  server {{ listen {listen}; {certs}\n"
        "    location / { return 200 \"iotprobe test\\n\"; } } }\n")
    argv = ["nginx", "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")]
    return start("nginx", argv, tmp, address, [(port, "tcp")])


def openssl_server(tmp: Path, address: str, port: int, tls: Certificate,
                   *extra: str) -> Daemon:
    """`openssl s_server`: a TLS peer whose options (e.g. -Verify 1) the test chooses."""
    argv = ["openssl", "s_server", "-accept", f"{address}:{port}", "-cert", str(tls.cert),
            "-key", str(tls.key), "-quiet", "-naccept", "1000", *extra]
    return start("s_server", argv, tmp, address, [(port, "tcp")])


def coap_server(tmp: Path, address: str, port: int = 5683, dtls_psk: str | None = None) -> Daemon:
    """libcoap's example server; with a PSK it serves DTLS on port + 1 as well."""
    if dtls_psk is None:
        argv = ["coap-server-notls", "-A", address, "-p", str(port)]
        return start("coap-server", argv, tmp, address, [(port, "udp")])
    argv = ["coap-server-openssl", "-A", address, "-p", str(port), "-k", dtls_psk]
    return start("coap-server", argv, tmp, address, [(port, "udp"), (port + 1, "udp")])


def tftpd(tmp: Path, address: str, port: int = 69) -> Daemon:
    """tftpd-hpa serving an empty directory (every read gets 'File not found')."""
    root = tmp / "tftp-root"
    root.mkdir(exist_ok=True)
    argv = ["in.tftpd", "--foreground", "--address", f"{address}:{port}", "--user", "root",
            "--secure", str(root)]
    return start("tftpd", argv, tmp, address, [(port, "udp")])


def dropbear(tmp: Path, address: str, port: int = 22) -> Daemon:
    """Dropbear SSH with a fresh host key and password logins off."""
    key = tmp / "dropbear_ed25519"
    if not key.exists():
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True,
                       capture_output=True, timeout=30)
    argv = ["dropbear", "-F", "-E", "-s", "-p", f"{address}:{port}", "-r", str(key),
            "-P", str(tmp / "dropbear.pid")]
    return start("dropbear", argv, tmp, address, [(port, "tcp")])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listener:
    """A TCP listener on the test's event loop, for behaviour no daemon shows."""

    def __init__(self, address: str, port: int, handler: Handler) -> None:
        if port == RESERVED_PORT:
            raise ValueError("port 2024 belongs to the machine")
        self.address, self.port, self.handler = address, port, handler
        self.server: asyncio.Server | None = None
        self.clients: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, self.address, self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.clients.add(writer)
        try:
            with contextlib.suppress(ConnectionError):
                await self.handler(reader, writer)
        finally:
            self.clients.discard(writer)
            writer.close()

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.clients):
            writer.close()
        await self.server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, never answer, never close (until the peer does)."""
    while await reader.read(4096):
        pass


def drip(chunk: bytes, every: float, count: int) -> Handler:
    """Send `chunk` every `every` seconds, `count` times at most, whatever is asked."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(count):
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(every)
    return serve


def greet(banner: bytes) -> Handler:
    """Send `banner` on accept, then read until the peer closes."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        while await reader.read(4096):
            pass
    return serve


def reply(data: bytes) -> Handler:
    """Answer the first bytes received with `data`, then close."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(data)
        await writer.drain()
    return serve


class UdpResponder(asyncio.DatagramProtocol):
    """A UDP peer on the test's event loop: `answer(request)` gives the reply (None: silence)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        out = self.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


@contextlib.asynccontextmanager
async def udp_responder(address: str, port: int,
                        answer: Callable[[bytes], bytes | None]) -> AsyncIterator[UdpResponder]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpResponder(answer), local_addr=(address, port), family=socket.AF_INET)
    try:
        yield protocol
    finally:
        transport.close()


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Orphans of this test (the daemons of a killed lab, the workers of a killed scan) become
    our children, to be reaped by PID here rather than lingering as zombies under a PID 1
    that does not reap."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


def reaped(pid: int, timeout: float) -> bool:
    """Whether the child `pid` exited and was reaped within `timeout` s (a guard against a
    hang, not a measure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def scan_context(address: str, tcp_ports: tuple[int, ...] | None = (), *, timeout: float = 1.5,
                 services: dict[str, tuple[int, ...]] | None = None,
                 **options: Any) -> Iterator[DeviceContext]:
    """A DeviceContext for one device, as the engine would build it (2024 excluded)."""
    scan_options = ScanOptions(timeout=timeout, tcp_ports=tcp_ports,
                               exclude_ports=(RESERVED_PORT,), **options)
    network = Network(scan_options)
    device = Device(id=address, address=address, services=services or {})
    try:
        yield DeviceContext(device, address, scan_options, network, params=lambda check: {})
    finally:
        network.close()


# ---------------------------------------------------------------------------------------------
# TLS and HTTP peers (certificates made here with `cryptography`, via the lab's issuer)
# ---------------------------------------------------------------------------------------------


def issue(tmp: Path, name: str, issuer: Issued | None, **options: Any) -> tuple[Certificate,
                                                                                Issued]:
    """A certificate written to `tmp` (see probe.lab.servers_tls.issue_certificate for the
    options: names, key, sha1, valid_from, valid_days, ca); issuer None: self-signed."""
    issued = issue_certificate(issuer, name, **options)
    cert, key = issued.write(tmp, name)
    return Certificate(cert, key), issued


def make_ca(tmp: Path, name: str = "test-ca") -> tuple[Certificate, Issued]:
    """A CA for the tests' certificates (RSA, so that it can sign with SHA-1 too)."""
    return issue(tmp, name, None, key="rsa2048", valid_days=3650, ca=True)


def nginx_site(tmp: Path, address: str, ports: list[int], http: str,
               name: str = "site") -> Daemon:
    """nginx in the foreground (one process, as root) with the caller's `http { }` body; it
    listens where that body says (`ports` on `address` are waited for)."""
    root = tmp / f"nginx-{name}"
    root.mkdir(exist_ok=True)
    temps = " ".join(f"{kind}_temp_path {root}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        f"user root; daemon off; master_process off; pid {root}/nginx.pid;\n"
        f"error_log {root}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{ access_log off; {temps}\n{http}\n}}\n")
    argv = ["nginx", "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")]
    return start(f"nginx-{name}", argv, tmp, address, [(port, "tcp") for port in ports])


@contextlib.contextmanager
def device_context(address: str, ports: tuple[int, ...], *, hostname: str | None = None,
                   trust: Path | None = None, timeout: float = 3.0,
                   params: dict[str, dict[str, Any]] | None = None,
                   **options: Any) -> Iterator[DeviceContext]:
    """A DeviceContext as the engine builds it for one device: TCP `ports` only (2024
    excluded, no UDP), with the inventory `hostname`, a trust anchor and per-check params."""
    if RESERVED_PORT in ports:
        raise ValueError("port 2024 belongs to the machine")
    scan_options = ScanOptions(timeout=timeout, tcp_ports=ports, exclude_ports=(RESERVED_PORT,),
                               udp=False, trust_anchor=str(trust) if trust else None, **options)
    network = Network(scan_options)
    target = Device(id=address, address=address, hostname=hostname)
    chosen = params or {}
    checks = catalogue()

    def params_for(check: str) -> dict[str, Any]:
        known = checks.get(check)
        return {**(known.defaults if known else {}), **chosen.get(check, {})}

    try:
        yield DeviceContext(target, address, scan_options, network, params=params_for)
    finally:
        network.close()


# ---------------------------------------------------------------------------------------------
# Monitoring peers (6.5): a broker that logs to a topic, a syslog forwarder over TLS
# ---------------------------------------------------------------------------------------------


def mosquitto_logging(tmp: Path, address: str, port: int, accounts: dict[str, str],
                      sys_interval: int = 1) -> Daemon:
    """mosquitto 2.0 with a password file (anonymous clients refused), its log published on
    `$SYS/broker/log/#` (`log_dest topic`) and `$SYS` updates every `sys_interval` seconds."""
    passwords = tmp / f"mosquitto-{port}.passwd"
    passwords.write_text("".join(f"{user}:{password}\n" for user, password in accounts.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, capture_output=True,
                   timeout=30)
    conf = tmp / f"mosquitto-log-{port}.conf"
    conf.write_text("\n".join([
        f"listener {port} {address}", "allow_anonymous false", f"password_file {passwords}",
        "user root", "persistence false", "log_dest stdout", "log_dest topic",
        f"sys_interval {sys_interval}", ""]))
    return start("mosquitto", ["mosquitto", "-c", str(conf)], tmp, address, [(port, "tcp")])


def rsyslog_tls_forwarder(tmp: Path, address: str, udp_port: int, target: tuple[str, int],
                          ca: Path) -> Daemon:
    """rsyslogd in the foreground: receives syslog on UDP `address:udp_port` and forwards every
    message as RFC 5424 over TLS (RFC 5425, octet counting, GnuTLS driver, the collector's
    certificate checked against `ca` only) to `target`."""
    work = tmp / f"rsyslog-{udp_port}"
    work.mkdir(exist_ok=True)
    conf = work / "rsyslog.conf"
    host, port = target
    if port == RESERVED_PORT or udp_port == RESERVED_PORT:
        raise ValueError("port 2024 belongs to the machine")
    conf.write_text("\n".join([
        f'global(workDirectory="{work}" defaultNetstreamDriver="gtls" '
        f'defaultNetstreamDriverCAFile="{ca}")',
        'module(load="imudp")',
        f'input(type="imudp" address="{address}" port="{udp_port}")',
        f'action(type="omfwd" target="{host}" port="{port}" protocol="tcp" '
        'StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="anon" '
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")', ""]))
    argv = ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")]
    return start("rsyslogd", argv, tmp, address, [(udp_port, "udp")])


@contextlib.contextmanager
def monitored_context(address: str, ports: tuple[int, ...], monitor: dict[str, dict[str, Any]],
                      *, timeout: float = 2.0, params: dict[str, dict[str, Any]] | None = None,
                      **options: Any) -> Iterator[DeviceContext]:
    """`device_context` for a device whose inventory declares `monitor` sinks."""
    if RESERVED_PORT in ports:
        raise ValueError("port 2024 belongs to the machine")
    scan_options = ScanOptions(timeout=timeout, tcp_ports=ports, exclude_ports=(RESERVED_PORT,),
                               udp=False, **options)
    network = Network(scan_options)
    target = Device(id=address, address=address, monitor=monitor, source="test-inventory:1")
    chosen = params or {}
    checks = catalogue()

    def params_for(check: str) -> dict[str, Any]:
        known = checks.get(check)
        return {**(known.defaults if known else {}), **chosen.get(check, {})}

    try:
        yield DeviceContext(target, address, scan_options, network, params=params_for)
    finally:
        network.close()


# ---------------------------------------------------------------------------------------------
# lighttpd over the TLS stacks of embedded devices (wolfSSL, mbed TLS, GnuTLS; OpenSSL)
# ---------------------------------------------------------------------------------------------

LIGHTTPD_TLS_MODULES = ("wolfssl", "mbedtls", "gnutls", "openssl")


def lighttpd_tls(tmp: Path, address: str, port: int, cert: Certificate,
                 module: str = "wolfssl", protocols: tuple[str, str] = ("TLSv1.2", "TLSv1.3"),
                 ciphers: str | None = None) -> Daemon:
    """lighttpd in the foreground (`-D`, one process, as root) serving HTTPS on address:port
    through its TLS `module` (Debian: lighttpd-mod-wolfssl, -mbedtls, -gnutls, -openssl).
    `protocols` are (MinProtocol, MaxProtocol) and `ciphers` the CipherString, both through
    `ssl.openssl.ssl-conf-cmd`, which every module reads (each maps OpenSSL-style cipher names
    onto its own library); None keeps the module's defaults."""
    if module not in LIGHTTPD_TLS_MODULES:
        raise ValueError(f"no lighttpd TLS module {module!r}")
    if port == RESERVED_PORT:
        raise ValueError("port 2024 belongs to the machine")
    root = tmp / f"lighttpd-{module}-{port}"
    (root / "htdocs").mkdir(parents=True, exist_ok=True)
    (root / "htdocs" / "index.html").write_text("device\n")
    commands = {"MinProtocol": protocols[0], "MaxProtocol": protocols[1]}
    if ciphers is not None:
        commands["CipherString"] = ciphers
    conf_cmd = ", ".join(f'"{key}" => "{value}"' for key, value in commands.items())
    conf = root / "lighttpd.conf"
    conf.write_text("\n".join([
        f'server.document-root = "{root / "htdocs"}"',
        f'server.bind = "{address}"', f"server.port = {port}",
        f'server.errorlog = "{root / "error.log"}"', f'server.upload-dirs = ("{root}")',
        f'server.modules = ("mod_{module}")',
        'ssl.engine = "enable"', f'ssl.pemfile = "{cert.cert}"', f'ssl.privkey = "{cert.key}"',
        f"ssl.openssl.ssl-conf-cmd = ({conf_cmd})", ""]))
    return start(f"lighttpd-{module}", ["lighttpd", "-D", "-f", str(conf)], tmp, address,
                 [(port, "tcp")])


# ---------------------------------------------------------------------------------------------
# Web servers other than nginx (HTTP verdicts on other servers, the HTTP matrix)
# Debian packages: lighttpd (+ lighttpd-mod-gnutls for HTTPS), busybox-static (httpd),
# mini-httpd
# ---------------------------------------------------------------------------------------------


def lighttpd_site(tmp: Path, address: str, ports: list[int], config: str,
                  name: str = "lighttpd") -> Daemon:
    """lighttpd in the foreground (`-D`, one process) serving `tmp/<name>/www`, with the common
    modules loaded (auth, redirect, setenv, access log, GnuTLS) and the caller's `config`, which
    says where it listens (`server.bind`, `server.port`, `$SERVER["socket"]`)."""
    root = tmp / name
    (root / "www").mkdir(parents=True, exist_ok=True)
    conf = root / "lighttpd.conf"
    conf.write_text("\n".join([
        'server.modules = ("mod_access", "mod_auth", "mod_authn_file", "mod_redirect", '
        '"mod_setenv", "mod_gnutls")',
        f'server.document-root = "{root / "www"}"',
        f'server.errorlog = "{root / "error.log"}"',
        'mimetype.assign = (".html" => "text/html", ".txt" => "text/plain; charset=utf-8")',
        'index-file.names = ("index.html")',
        config, ""]))
    argv = ["lighttpd", "-D", "-f", str(conf)]
    return start(name, argv, tmp, address, [(port, "tcp") for port in ports])


def document_root(root: Path, pages: dict[str, str]) -> Path:
    """`root/www` holding `pages` (path -> content), its folders made as needed."""
    www = root / "www"
    www.mkdir(parents=True, exist_ok=True)
    for path, content in pages.items():
        page = www / path.lstrip("/")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(content)
    return www


def busybox_httpd(tmp: Path, address: str, port: int, pages: dict[str, str],
                  protected: dict[str, tuple[str, str]] | None = None,
                  name: str = "busybox-httpd") -> Daemon:
    """busybox httpd in the foreground (`-f`), the web server of router firmware: `pages` (path
    -> content) under its document root, and Basic authentication (`/dir:user:password` lines
    of its `-c` file) on each directory of `protected` (path -> (user, password))."""
    root = tmp / name
    www = document_root(root, pages)
    conf = root / "httpd.conf"
    conf.write_text("".join(f"{path}:{user}:{password}\n"
                            for path, (user, password) in (protected or {}).items()))
    argv = ["busybox", "httpd", "-f", "-p", f"{address}:{port}", "-h", str(www), "-c", str(conf)]
    return start(name, argv, tmp, address, [(port, "tcp")])


def mini_httpd(tmp: Path, address: str, port: int, pages: dict[str, str],
               protected: dict[str, tuple[str, str]] | None = None,
               name: str = "mini-httpd") -> Daemon:
    """mini_httpd in the foreground (`-D`), serving `pages` (path -> content); each directory of
    `protected` (path -> (user, password)) gets an .htpasswd, which mini_httpd answers with
    Basic authentication."""
    root = tmp / name
    www = document_root(root, pages)
    for path, (user, password) in (protected or {}).items():
        folder = www / path.strip("/")
        folder.mkdir(parents=True, exist_ok=True)
        hashed = subprocess.run(["openssl", "passwd", "-1", password], check=True,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        (folder / ".htpasswd").write_text(f"{user}:{hashed}\n")
    argv = ["mini_httpd", "-D", "-h", address, "-p", str(port), "-d", str(www),
            "-l", str(root / "access.log"), "-u", "root", "-T", "utf-8"]
    return start(name, argv, tmp, address, [(port, "tcp")])


def apache_site(tmp: Path, address: str, ports: list[int], config: str,
                name: str = "apache") -> Daemon:
    """apache2 as one process in the foreground (`-X`, prefork), serving `tmp/<name>/www`,
    with the modules of a small device's console loaded (auth Basic/Digest, headers, SSL,
    rewrite) and the caller's `config`, which says where it listens (`Listen`). Each
    <VirtualHost> of `config` needs a ServerName (an IP literal), or apache looks its address
    up in the DNS."""
    root = tmp / name
    (root / "www").mkdir(parents=True, exist_ok=True)
    modules = ["mpm_prefork", "authz_core", "authz_user", "authn_core", "authn_file",
               "auth_basic", "auth_digest", "headers", "mime", "dir", "alias", "rewrite",
               "ssl", "socache_shmcb"]
    conf = root / "apache2.conf"
    conf.write_text("\n".join([
        *(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in modules),
        f'ServerRoot "{root}"', f'PidFile "{root / "apache2.pid"}"',
        f'ErrorLog "{root / "error.log"}"', f"ServerName {address}",
        f'DocumentRoot "{root / "www"}"', "DirectoryIndex index.html",
        "TypesConfig /etc/mime.types", f'Mutex file:{root} default',
        config, ""]))
    argv = ["apache2", "-X", "-f", str(conf)]
    return start(name, argv, tmp, address, [(port, "tcp") for port in ports],
                 env={"APACHE_RUN_DIR": str(root), "PATH": "/usr/sbin:/usr/bin:/bin"})
