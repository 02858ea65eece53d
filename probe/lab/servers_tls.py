"""TLS and HTTP services for the TLS personas: a small web application, a TLS layer with the
persona's own certificate and protocol settings, and the certificates themselves.

The fleet wraps a `TcpListener(tls=True)` in the lab's good TLS (lab CA, TLS 1.2+). Personas
that need something else (an expired or self-signed certificate, TLS 1.0, weak suites) listen
without the fleet's TLS and wrap each connection in `TlsLayer`, which starts TLS itself with a
context built for the address the connection arrived on. Their certificates come from a vendor
CA of this process, not the lab CA: a scan of the lab with the lab CA as trust anchor rejects
them, which is what these personas are for.

`issue_certificate` also makes the tests' certificates (any key, hash, validity and names),
including SHA-1-signed ones, which `cryptography` no longer signs: those are re-signed by hand.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import functools
import hashlib
import hmac
import ipaddress
import os
import secrets
import ssl
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probe.lab.servers import (
    HANDSHAKE_TIMEOUT,
    MAX_READ,
    StreamService,
    offered,
    serve_http,
    speaking,
)
from probe.stamps import stamp

KeyKind = Literal["ec256", "rsa1024", "rsa2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, both PEM."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """(certificate file, key file) under `directory`; the key readable by its owner only."""
        cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
        cert_file.write_bytes(self.cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.key_pem)
        return cert_file, key_file


def _new_key(kind: KeyKind) -> PrivateKey:
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(65537, 1024 if kind == "rsa1024" else 2048)


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _resign_sha1(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """`cert` (RSA, SHA-256) signed again with SHA-1: same fields, sha1WithRSAEncryption."""
    tbs = cert.tbs_certificate_bytes
    if tbs.count(_SHA256_RSA) != 1:
        raise ValueError("expected one sha256WithRSAEncryption identifier in the TBS")
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _tlv(0x30, _SHA1_RSA + b"\x05\x00")
    der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_certificate(
    issuer: Issued | None,
    common_name: str,
    *,
    names: Sequence[str] = (),
    key: KeyKind = "ec256",
    sha1: bool = False,
    valid_from: dt.datetime | None = None,
    valid_days: float = 365,
    ca: bool = False,
) -> Issued:
    """A certificate for `names` (IP addresses or DNS names, in subjectAltName) signed by
    `issuer`, or self-signed when `issuer` is None. `sha1` needs an RSA key (issuer's too)."""
    private = _new_key(key)
    start = valid_from or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer = issuer.key if issuer is not None else private
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(private, rsa.RSAPrivateKey), data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    if sha1:
        if not isinstance(signer, rsa.RSAPrivateKey):
            raise ValueError("a SHA-1 signature needs an RSA signing key")
        cert = _resign_sha1(cert, signer)
    return Issued(cert, private)


@functools.cache
def vendor_ca() -> Issued:
    """The CA of this process's persona certificates (not the lab CA), RSA so that it can
    sign with SHA-1 too."""
    return issue_certificate(None, "iotprobe lab vendor CA", key="rsa2048", valid_days=3650,
                             ca=True)


CertificateKind = Literal["expired", "self-signed", "weak", "vendor"]


@functools.lru_cache(maxsize=64)
def persona_certificate(kind: CertificateKind, address: str) -> Issued:
    """A device certificate for `address`: expired, self-signed, weak (RSA-1024 signed with
    SHA-1) or just from the vendor CA."""
    now = dt.datetime.now(dt.UTC)
    name = f"device {address}"
    if kind == "expired":
        return issue_certificate(vendor_ca(), name, names=[address],
                                 valid_from=now - dt.timedelta(days=400), valid_days=390)
    if kind == "self-signed":
        return issue_certificate(None, name, names=[address])
    if kind == "weak":
        return issue_certificate(vendor_ca(), name, names=[address], key="rsa1024", sha1=True)
    return issue_certificate(vendor_ca(), name, names=[address])


# ---------------------------------------------------------------------------------------------
# TLS contexts and the TLS layer
# ---------------------------------------------------------------------------------------------

TlsSettings = Literal["modern", "legacy"]
OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8
"""OpenSSL 3's SSL_OP_ALLOW_CLIENT_RENEGOTIATION (the ssl module has no name for it)."""


def server_context(issued: Issued, settings: TlsSettings) -> ssl.SSLContext:
    """`modern`: TLS 1.2 and 1.3, ECDHE with AEAD, no renegotiation, no compression.
    `legacy`: TLS 1.0 to 1.2, every suite OpenSSL has (anonymous and static RSA included, at
    security level 0) and client-initiated renegotiation allowed: a neglected web UI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION
    if settings == "modern":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.options |= OP_ALLOW_CLIENT_RENEGOTIATION
    with tempfile.TemporaryDirectory(prefix="iotprobe-lab-") as tmp:
        cert_file, key_file = issued.write(Path(tmp), "server")
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


@functools.lru_cache(maxsize=64)
def _context(kind: CertificateKind, settings: TlsSettings, address: str) -> ssl.SSLContext:
    return server_context(persona_certificate(kind, address), settings)


@dataclass(frozen=True)
class TlsLayer:
    """Starts TLS on each connection with the persona's own certificate and settings, then
    hands the connection to `inner`. Contexts are made on the first connection to an address
    (the certificate names the address the connection arrived on)."""

    inner: StreamService
    certificate: CertificateKind = "vendor"
    settings: TlsSettings = "modern"

    def offers(self, tls: bool) -> frozenset[str]:
        return offered(self.inner, True) | {"tls"}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = str(writer.get_extra_info("sockname")[0])
        context = _context(self.certificate, self.settings, address)
        await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        await self.inner.serve(reader, writer)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

AuthScheme = Literal["", "basic", "digest"]
_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            400: "Bad Request"}
MAX_NONCES = 64


@dataclass(frozen=True)
class Page:
    body: str = ""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    auth: AuthScheme = ""  # credentials needed: the app's `credentials`, by this scheme
    location: str = ""


def html(title: str, text: str = "") -> str:
    return (f"<!doctype html>\n<html><head><title>{title}</title></head><body><h1>{title}"
            f"</h1>{text}</body></html>\n")


LOGIN_FORM = html("Sign in", '<form method="post" action="/login"><input name="user">'
                  '<input type="password" name="password"><button>Sign in</button></form>')


def security_txt(expires: dt.datetime, contact: str = "mailto:psirt@vendor.example") -> str:
    """An RFC 9116 security.txt with `contact` and the given Expires."""
    return (f"Contact: {contact}\nExpires: {stamp(expires)}\nPreferred-Languages: en\n"
            "Policy: https://vendor.example/security/policy\n")


@dataclass(frozen=True)
class WebApp:
    """A device web interface: persistent connections (`serve_http`), pages by exact path,
    Basic or Digest authentication where a page asks for it, optional HSTS, a Date header that
    may be off by `clock_offset` seconds (None: no Date at all). With `redirect_port`, every
    request is redirected to https on that port instead."""

    pages: tuple[tuple[str, Page], ...] = ()
    credentials: tuple[str, str] | None = None
    hsts: str | None = None
    clock_offset: float | None = 0.0
    redirect_port: int | None = None
    realm: str = "device"
    nonces: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_NONCES),
                               compare=False, hash=False)

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("http", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, self._answer)

    def _answer(self, parts: list[str], headers: dict[str, str]) -> tuple[list[str], bytes]:
        extra: dict[str, str] = {}
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, page = 400, Page(status=400)
        else:
            status, page, extra = self._route(parts[0], parts[1], headers)
        return self._response(status, page, extra, parts[0] == "HEAD")

    def _route(self, method: str, target: str, headers: dict[str, str]
               ) -> tuple[int, Page, dict[str, str]]:
        if self.redirect_port is not None:
            host = headers.get("host", "").rsplit(":", 1)[0] or "device"
            port = "" if self.redirect_port == 443 else f":{self.redirect_port}"
            return 301, Page(status=301), {"Location": f"https://{host}{port}{target}"}
        if method not in ("GET", "HEAD"):
            return 405, Page(status=405), {"Allow": "GET, HEAD"}
        path = target.split("?", 1)[0]
        page = dict(self.pages).get(path)
        if page is None:
            return 404, Page(html("Not found"), 404), {}
        if page.location:
            return page.status, page, {"Location": page.location}
        if page.auth and not self._authorized(page.auth, headers.get("authorization", ""),
                                              target):
            return 401, Page(html("Unauthorized"), 401), {
                "WWW-Authenticate": self._challenge(page.auth)}
        return page.status, page, {}

    def _challenge(self, scheme: AuthScheme) -> str:
        if scheme == "basic":
            return f'Basic realm="{self.realm}"'
        nonce = secrets.token_hex(16)
        self.nonces.append(nonce)
        return (f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{nonce}", '
                f'opaque="{secrets.token_hex(8)}"')

    def _authorized(self, scheme: AuthScheme, header: str, target: str) -> bool:
        if self.credentials is None:
            return False
        user, password = self.credentials
        kind, _, value = header.partition(" ")
        if scheme == "basic" and kind.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(given.encode(), f"{user}:{password}".encode())
        if scheme == "digest" and kind.lower() == "digest":
            return self._digest_ok(_digest_fields(value), user, password, target)
        return False

    def _digest_ok(self, fields: dict[str, str], user: str, password: str, target: str) -> bool:
        if fields.get("username") != user or fields.get("nonce") not in self.nonces:
            return False
        if fields.get("uri") != target:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        ha1 = md5(f"{user}:{self.realm}:{password}")
        ha2 = md5(f"GET:{target}")
        if fields.get("qop") == "auth":
            expected = md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:"
                           f"{fields.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = md5(f"{ha1}:{fields['nonce']}:{ha2}")
        return hmac.compare_digest(expected, fields.get("response", ""))

    def _response(self, status: int, page: Page, extra: dict[str, str], head_only: bool
                  ) -> tuple[list[str], bytes]:
        body = page.body.encode()[:MAX_READ * 8]
        headers = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                   "Server: iotprobe-lab", f"Content-Type: {page.content_type}",
                   f"Content-Length: {len(body)}"]
        if self.clock_offset is not None:
            headers.append("Date: " + email.utils.formatdate(time.time() + self.clock_offset,
                                                             usegmt=True))
        if self.hsts is not None:
            headers.append(f"Strict-Transport-Security: {self.hsts}")
        headers += [f"{k}: {v}" for k, v in extra.items()]
        return headers, b"" if head_only else body


def _digest_fields(value: str) -> dict[str, str]:
    """The key=value pairs of a Digest Authorization header (quoted or not)."""
    out: dict[str, str] = {}
    for part in _split_params(value):
        key, _, raw = part.partition("=")
        out[key.strip().lower()] = raw.strip().strip('"')
    return out


def _split_params(value: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value[:MAX_READ]:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]
