"""The HTTP peers of the interoperability matrix (see `interop`): nginx, lighttpd, busybox
httpd (the web server of router firmware), mini_httpd and apache, each in good and bad
configurations, read by curl as the reference (IP literals only, never port 2024)."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daemons import (
    Certificate,
    apache_site,
    busybox_httpd,
    issue,
    lighttpd_site,
    mini_httpd,
    nginx_site,
)

from interop import Peer, Protocol, Reading, ReadPeer, Setup, StartPeer, debian_version
from probe.model import Status
from probe.protocols.http.checks import AuthenticationParams
from probe.protocols.http.collectors import SECURITY_TXT

ADMIN = "<h1>admin console</h1>"
INDEX = "<h1>device</h1>"
HSTS = "max-age=31536000"
MIN_MAX_AGE = 15552000  # http.hsts' default min_max_age
MAX_SKEW = 60  # monitor.clock-sync's default max_skew_seconds


def _stamp(days: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def good_security_txt() -> str:
    return f"Contact: mailto:psirt@vendor.example\nExpires: {_stamp(180)}\n"


def wrong_security_txt() -> str:
    return "Contact: javascript:alert(1)\nExpires: 2099-01-01T00:00:00Z\n"


def _certificate(tmp: Path, address: str) -> Certificate:
    made, _ = issue(tmp, "web", None, names=[address])
    return made


# ---------------------------------------------------------------------------------------------
# The reference: curl
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    port: int
    tls: bool

    def url(self, address: str, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{address}:{self.port}{path}"


@dataclass(frozen=True)
class Answer:
    status: int
    size: int
    redirect: str
    headers: Mapping[str, str]


def curl(url: str, *, follow: bool = False) -> Answer:
    """One GET by curl (-k: observation, not validation), redirects followed only when asked
    (at most 3): status, body size, where it would redirect, the last response's headers."""
    argv = ["curl", "-s", "-k", "-o", "/dev/null", "-D", "-", "--max-time", "10",
            "-w", "\n%{http_code} %{size_download} %{redirect_url}", "--noproxy", "*"]
    if follow:
        argv += ["-L", "--max-redirs", "3"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=30)
    *heads, last = done.stdout.rstrip("\n").split("\n")
    code, size, *where = last.split(" ", 2)
    block = "\n".join(heads).replace("\r", "").strip().split("\n\n")[-1]
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in block.splitlines()[1:])}
    return Answer(int(code), int(size), where[0] if where else "", headers)


def _authentication(address: str, listeners: Sequence[Listener]) -> Reading:
    """Every protected path, redirects followed: 2xx is exposed, 401/403/404 protected,
    anything else undecided."""
    said, exposed, undecided = [], False, False
    for listener in listeners:
        for path in AuthenticationParams().protected_paths:
            answer = curl(listener.url(address, path), follow=True)
            said.append(f"{listener.port}{path} {answer.status}")
            exposed |= 200 <= answer.status < 300
            undecided |= answer.status not in (401, 403, 404) and not 200 <= answer.status < 300
    status = Status.FAIL if exposed else Status.ERROR if undecided else Status.PASS
    return Reading(status, ", ".join(said))


def _cleartext(address: str, listeners: Sequence[Listener]) -> Reading:
    """GET / on each cleartext listener: a 2xx with a body fails, a redirect to HTTPS or
    nothing served passes."""
    said, served = [], False
    for listener in (x for x in listeners if not x.tls):
        answer = curl(listener.url(address, "/"))
        said.append(f"{listener.port}/ {answer.status} {answer.size} bytes"
                    + (f" -> {answer.redirect}" if answer.redirect else ""))
        served |= 200 <= answer.status < 300 and answer.size > 0
    return Reading(Status.FAIL if served else Status.PASS, ", ".join(said))


def _hsts(address: str, listeners: Sequence[Listener]) -> Reading:
    said, weak = [], False
    for listener in (x for x in listeners if x.tls):
        value = curl(listener.url(address, "/")).headers.get("strict-transport-security", "")
        age = re.search(r"max-age=\"?(\d{1,10})", value)
        said.append(f"{listener.port}: {value or 'no Strict-Transport-Security'}")
        weak |= age is None or int(age.group(1)) < MIN_MAX_AGE
    return Reading(Status.FAIL if weak else Status.PASS, ", ".join(said))


def _clock(address: str, listeners: Sequence[Listener]) -> Reading:
    said, skewed = [], False
    for listener in listeners:
        date = curl(listener.url(address, "/")).headers.get("date", "")
        said.append(f"{listener.port}: Date {date or 'missing'}")
        try:
            skew = abs(email.utils.parsedate_to_datetime(date).timestamp()
                       - dt.datetime.now(dt.UTC).timestamp())
        except (TypeError, ValueError):
            skew = float("inf")
        skewed |= skew > MAX_SKEW
    return Reading(Status.FAIL if skewed else Status.PASS, ", ".join(said))


def _disclosure(address: str, listeners: Sequence[Listener]) -> Reading:
    """Whether each HTTPS listener serves security.txt with a Contact and an Expires field
    (curl shows the file; it does not judge the fields' values)."""
    said, missing = [], False
    for listener in (x for x in listeners if x.tls):
        answer = curl(listener.url(address, SECURITY_TXT), follow=True)
        said.append(f"{listener.port}{SECURITY_TXT} {answer.status} {answer.size} bytes")
        missing |= not 200 <= answer.status < 300
    return Reading(Status.FAIL if missing else Status.PASS, ", ".join(said))


def reference(*listeners: Listener) -> ReadPeer:
    """curl's reading of a peer with these listeners, for every check it can speak to."""
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        out = {"http.authentication": _authentication(address, listeners),
               "monitor.clock-sync": _clock(address, listeners)}
        if any(not x.tls for x in listeners):
            out["http.cleartext"] = _cleartext(address, listeners)
        if any(x.tls for x in listeners):
            out["http.hsts"] = _hsts(address, listeners)
            out["monitor.vulnerability-disclosure"] = _disclosure(address, listeners)
        return out
    return read


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------

PASSWORD = "matrix-Secret-7"


def _site(www: Path, security_txt: str | None = None) -> Path:
    """A device's pages under `www`: an index, the admin console, maybe a security.txt."""
    pages = {"index.html": INDEX, "admin/index.html": ADMIN}
    if security_txt is not None:
        pages[SECURITY_TXT.lstrip("/")] = security_txt
    for path, content in pages.items():
        (www / path).parent.mkdir(parents=True, exist_ok=True)
        (www / path).write_text(content)
    return www


def _ports(*listeners: Listener) -> Setup:
    return Setup(inventory={"ports": ",".join(str(x.port) for x in listeners)})


PLAIN = Listener(80, False)
TLS = Listener(443, True)


@contextmanager
def nginx_open_admin(tmp: Path, address: str) -> Iterator[Setup]:
    www = _site(tmp / "www")
    with nginx_site(tmp, address, [80], f"""
          server {{ listen {address}:80; root {www}; }}"""):
        yield _ports(PLAIN)


@contextmanager
def nginx_server_error(tmp: Path, address: str) -> Iterator[Setup]:
    www = _site(tmp / "www")
    with nginx_site(tmp, address, [80], f"""
          server {{ listen {address}:80; root {www};
                    location /admin {{ return 500 "{ADMIN}"; }} }}"""):
        yield _ports(PLAIN)


@contextmanager
def nginx_good(tmp: Path, address: str) -> Iterator[Setup]:
    www = _site(tmp / "www", good_security_txt())
    cert = _certificate(tmp, address)
    (tmp / "users").write_text(f"admin:{{PLAIN}}{PASSWORD}\n")
    with nginx_site(tmp, address, [80, 443], f"""
          server {{ listen {address}:80; return 301 https://{address}$request_uri; }}
          server {{ listen {address}:443 ssl; ssl_certificate {cert.cert};
                    ssl_certificate_key {cert.key}; root {www};
                    add_header Strict-Transport-Security "{HSTS}" always;
                    location /admin {{ auth_basic "device"; auth_basic_user_file {tmp / "users"};
                                      }} }}"""):
        yield _ports(PLAIN, TLS)


def _lighttpd_tls(address: str, cert: Certificate) -> str:
    return (f'server.bind = "{address}"\nserver.port = 443\nssl.engine = "enable"\n'
            f'ssl.pemfile = "{cert.cert}"\nssl.privkey = "{cert.key}"\n')


@contextmanager
def lighttpd_open_admin(tmp: Path, address: str) -> Iterator[Setup]:
    _site(tmp / "lighttpd" / "www")
    with lighttpd_site(tmp, address, [80], f'server.bind = "{address}"\nserver.port = 80'):
        yield _ports(PLAIN)


@contextmanager
def lighttpd_broken_redirect(tmp: Path, address: str) -> Iterator[Setup]:
    """Every path redirects to a Location with port 99999, which no client can follow."""
    _site(tmp / "lighttpd" / "www")
    with lighttpd_site(tmp, address, [80], f'server.bind = "{address}"\nserver.port = 80\n'
                       f'url.redirect = ("^/(.*)" => "http://{address}:99999/$1")'):
        yield _ports(PLAIN)


@contextmanager
def lighttpd_good(tmp: Path, address: str) -> Iterator[Setup]:
    """HTTPS only (GnuTLS), HSTS, the admin console behind Digest authentication."""
    _site(tmp / "lighttpd" / "www", good_security_txt())
    cert = _certificate(tmp, address)
    digest = subprocess.run(["openssl", "dgst", "-md5", "-r"], input=f"admin:device:{PASSWORD}",
                            capture_output=True, text=True, check=True, timeout=30)
    (tmp / "htdigest").write_text(f"admin:device:{digest.stdout.split()[0]}\n")
    with lighttpd_site(tmp, address, [443], _lighttpd_tls(address, cert) + f"""
auth.backend = "htdigest"
auth.backend.htdigest.userfile = "{tmp / "htdigest"}"
auth.require = ("/admin" => ("method" => "digest", "realm" => "device",
                             "require" => "valid-user"))
setenv.add-response-header = ("Strict-Transport-Security" => "{HSTS}")"""):
        yield _ports(TLS)


@contextmanager
def lighttpd_careless(tmp: Path, address: str) -> Iterator[Setup]:
    """HTTPS with Basic authentication on the admin console, but no HSTS and a security.txt
    whose Contact is a javascript: URI (and whose Expires is decades ahead)."""
    _site(tmp / "lighttpd" / "www", wrong_security_txt())
    cert = _certificate(tmp, address)
    (tmp / "users").write_text(f"admin:{PASSWORD}\n")
    with lighttpd_site(tmp, address, [443], _lighttpd_tls(address, cert) + f"""
auth.backend = "plain"
auth.backend.plain.userfile = "{tmp / "users"}"
auth.require = ("/admin" => ("method" => "basic", "realm" => "device",
                             "require" => "valid-user"))"""):
        yield _ports(TLS)


@contextmanager
def apache_digest(tmp: Path, address: str) -> Iterator[Setup]:
    """HTTPS with HSTS and Digest on the admin console, HTTP redirecting to HTTPS, and no
    security.txt."""
    _site(tmp / "apache" / "www")
    cert = _certificate(tmp, address)
    digest = subprocess.run(["openssl", "dgst", "-md5", "-r"], input=f"admin:device:{PASSWORD}",
                            capture_output=True, text=True, check=True, timeout=30)
    (tmp / "htdigest").write_text(f"admin:device:{digest.stdout.split()[0]}\n")
    with apache_site(tmp, address, [80, 443], f"""Listen {address}:80
Listen {address}:443
<VirtualHost {address}:80>
  ServerName {address}
  Redirect permanent / https://{address}/
</VirtualHost>
<VirtualHost {address}:443>
  ServerName {address}
  SSLEngine on
  SSLCertificateFile {cert.cert}
  SSLCertificateKeyFile {cert.key}
  Header always set Strict-Transport-Security "{HSTS}"
  <Location /admin>
    AuthType Digest
    AuthName device
    AuthUserFile {tmp / "htdigest"}
    Require valid-user
  </Location>
</VirtualHost>"""):
        yield _ports(PLAIN, TLS)


@contextmanager
def busybox_protected(tmp: Path, address: str) -> Iterator[Setup]:
    with busybox_httpd(tmp, address, 80, {"index.html": INDEX, "admin/index.html": ADMIN},
                       {"/admin": ("admin", PASSWORD)}):
        yield _ports(PLAIN)


@contextmanager
def busybox_open(tmp: Path, address: str) -> Iterator[Setup]:
    with busybox_httpd(tmp, address, 80, {"index.html": INDEX, "admin/index.html": ADMIN}):
        yield _ports(PLAIN)


@contextmanager
def mini_httpd_protected(tmp: Path, address: str) -> Iterator[Setup]:
    with mini_httpd(tmp, address, 80, {"index.html": INDEX, "admin/index.html": ADMIN},
                    {"/admin": ("admin", PASSWORD)}):
        yield _ports(PLAIN)



P, F, E, NA = Status.PASS, Status.FAIL, Status.ERROR, Status.NOT_APPLICABLE
CURL = "curl"
DISCLOSURE_NOTE = ("curl only shows that the file is served; its Contact is a javascript: URI, "
                   "which RFC 9116 2.5.3 forbids (mailto:, https: or tel: only), so the probe "
                   "fails it")

REDIRECT_NOTE = ("curl sees a 301 without content and reads no further; the redirect's port "
                 "99999 cannot be followed, so whether / leads to HTTPS is undecided, and the "
                 "probe says error rather than pass")


def _peer(implementation: str, package: str, configuration: str, start: StartPeer,
          expect: Mapping[str, Status], *listeners: Listener,
          notes: Mapping[str, str] | None = None) -> Peer:
    return Peer(Protocol.HTTP, implementation, debian_version(package), configuration, start,
                expect, CURL, reference(*listeners), notes or {})


PEERS: list[Peer] = [
    _peer("nginx", "nginx", "HTTP only, admin console open", nginx_open_admin,
          {"http.cleartext": F, "http.authentication": F, "http.hsts": NA,
           "monitor.vulnerability-disclosure": NA, "monitor.clock-sync": P}, PLAIN),
    _peer("nginx", "nginx", "HTTP only, admin console answers 500 with its page",
          nginx_server_error,
          {"http.cleartext": F, "http.authentication": E, "monitor.clock-sync": P}, PLAIN),
    _peer("nginx", "nginx", "HTTPS with HSTS, Basic on admin, security.txt; HTTP redirects",
          nginx_good,
          {"http.cleartext": P, "http.authentication": P, "http.hsts": P,
           "monitor.vulnerability-disclosure": P, "monitor.clock-sync": P}, PLAIN, TLS),
    _peer("lighttpd", "lighttpd", "HTTP only, admin console open", lighttpd_open_admin,
          {"http.cleartext": F, "http.authentication": F, "http.hsts": NA,
           "monitor.clock-sync": P}, PLAIN),
    _peer("lighttpd", "lighttpd", "HTTP only, every path redirects to port 99999",
          lighttpd_broken_redirect,
          {"http.cleartext": E, "http.authentication": E, "monitor.clock-sync": P}, PLAIN,
          notes={"http.cleartext": REDIRECT_NOTE}),
    _peer("lighttpd", "lighttpd-mod-gnutls", "HTTPS (GnuTLS) with HSTS, Digest on admin, "
          "security.txt", lighttpd_good,
          {"http.cleartext": NA, "http.authentication": P, "http.hsts": P,
           "monitor.vulnerability-disclosure": P, "monitor.clock-sync": P}, TLS),
    _peer("lighttpd", "lighttpd-mod-gnutls", "HTTPS (GnuTLS), Basic on admin, no HSTS, "
          "security.txt with a javascript: Contact", lighttpd_careless,
          {"http.authentication": P, "http.hsts": F, "monitor.vulnerability-disclosure": F,
           "monitor.clock-sync": P}, TLS,
          notes={"monitor.vulnerability-disclosure": DISCLOSURE_NOTE}),
    _peer("apache", "apache2", "HTTPS with HSTS, Digest on admin, no security.txt; HTTP "
          "redirects", apache_digest,
          {"http.cleartext": P, "http.authentication": P, "http.hsts": P,
           "monitor.vulnerability-disclosure": F, "monitor.clock-sync": P}, PLAIN, TLS),
    _peer("busybox httpd", "busybox-static", "HTTP only, Basic on admin", busybox_protected,
          {"http.cleartext": F, "http.authentication": P, "monitor.clock-sync": P}, PLAIN),
    _peer("busybox httpd", "busybox-static", "HTTP only, admin console open", busybox_open,
          {"http.cleartext": F, "http.authentication": F, "monitor.clock-sync": P}, PLAIN),
    _peer("mini_httpd", "mini-httpd", "HTTP only, Basic on admin (.htpasswd)",
          mini_httpd_protected,
          {"http.cleartext": F, "http.authentication": P, "monitor.clock-sync": P}, PLAIN),
]
