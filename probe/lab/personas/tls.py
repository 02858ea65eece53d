"""TLS and web personas: a neglected web UI, a broker with an expired certificate, a camera with
a self-signed one, a device whose clock is off by hours, a good web UI and a gateway that
publishes its security contact.

Expectations hold for a scan of the lab with the lab CA as trust anchor (`iotprobe scan
--trust-anchor <state-dir>/lab-ca.pem`, the path `iotprobe lab status` prints) and the default,
non-intrusive profile; where a persona has several endpoints, the expected status is the worst
of its results (fail, then error, skipped, pass, not_applicable). The personas that need other
TLS than the lab's (expired, self-signed, weak) serve it themselves (`TlsLayer`) with
certificates from a vendor CA, which the lab CA does not vouch for.
"""

from __future__ import annotations

import datetime as dt

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    DISCLOSURE,
    FAIL,
    GOOD_TLS,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    HTTP_DEFAULT_CREDENTIALS,
    HTTP_HSTS,
    MQTT_DEFAULT_CREDENTIALS,
    OPEN_PORTS,
    PASS,
    REFUSING_MQTTS,
    TLS_CHECKS,
    TLS_TRUST,
    TLS_VALIDITY,
    WEB_CHECKS,
    Persona,
    every,
)
from probe.lab.servers import MqttRefuse, TcpListener
from probe.lab.servers_tls import LOGIN_FORM, Page, TlsLayer, WebApp, html, security_txt
from probe.model import Verdict

HSTS = "max-age=31536000; includeSubDomains"
ACCOUNT = ("admin", "lab-Zq8-not-a-default")
"""The good web UIs' only account: lab data, not a secret, and on no default list."""
SKEW = 3 * 3600.0
WELL_KEPT_WEB = every(tuple(c for c in WEB_CHECKS if c != HTTP_CLEARTEXT), PASS)
"""A web UI over HTTPS only that gets everything right (cleartext HTTP: not applicable)."""


def _security(days: int) -> tuple[str, Page]:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return "/.well-known/security.txt", Page(security_txt(expires),
                                             content_type="text/plain; charset=utf-8")


def _guarded(title: str) -> Page:
    return Page(html(title), auth="digest")


GOOD_PAGES = (
    ("/", Page(html("Camera", '<a href="/login">Sign in</a>'))),
    ("/login", Page(LOGIN_FORM)),
    ("/admin", _guarded("Administration")),
    ("/api", Page('{"error": "authentication required"}', 401,
                  content_type="application/json")),
    ("/config", Page(status=302, location="/login?next=/config")),
    ("/cgi-bin/", Page(html("Forbidden"), 403)),
    ("/setup", _guarded("Setup")),
    ("/settings", _guarded("Settings")),
)

WEAK_APP = WebApp(
    pages=(
        ("/", Page(html("IP Camera", '<a href="/admin">Administration</a>'))),
        ("/admin", Page(html("Administration", "<p>Stream, network, users</p>"))),
        ("/setup", Page(html("First-time setup"))),
        ("/cgi-bin/", Page(html("CGI"), auth="basic")),
    ),
    credentials=("admin", "admin"),
)

WEAK_WEBUI = Persona(
    name="weak-webui",
    description="a neglected camera web UI: content on cleartext HTTP 80; HTTPS 443 with "
                "TLS 1.0/1.1, anonymous and static-RSA suites, client renegotiation and an "
                "RSA-1024 SHA-1 vendor certificate; /admin without login, admin/admin on "
                "/cgi-bin/ (Basic), no HSTS, no security.txt",
    device_class="camera",
    listeners=(
        TcpListener(80, WEAK_APP),
        TcpListener(443, TlsLayer(WEAK_APP, certificate="weak", settings="legacy")),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **every(TLS_CHECKS, FAIL),
            TLS_VALIDITY: PASS, HTTP_CLEARTEXT: FAIL, HTTP_AUTHENTICATION: FAIL, HTTP_HSTS: FAIL,
            CLOCK_SYNC: PASS, DISCLOSURE: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: FAIL},
)

EXPIRED_BROKER = Persona(
    name="expired-broker",
    description="MQTT over TLS on 8883 (refuses anonymous clients) with a vendor certificate "
                "that expired ten days ago",
    device_class="broker",
    listeners=(TcpListener(8883, TlsLayer(MqttRefuse(), certificate="expired")),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **REFUSING_MQTTS, **GOOD_TLS,
            TLS_VALIDITY: FAIL, TLS_TRUST: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS},
)

SELFSIGNED_CAMERA = Persona(
    name="selfsigned-camera",
    description="a well-kept camera web UI on 443 whose certificate is self-signed",
    device_class="camera",
    listeners=(TcpListener(443, TlsLayer(
        WebApp(pages=(*GOOD_PAGES, _security(180)), credentials=ACCOUNT, hsts=HSTS),
        certificate="self-signed")),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **GOOD_TLS, TLS_TRUST: FAIL,
            **WELL_KEPT_WEB},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS},
)

SKEWED_CLOCK = Persona(
    name="skewed-clock",
    description="a camera whose clock runs three hours ahead (HTTP Date) and whose "
                "security.txt expired; HTTP 80 only redirects to HTTPS 443",
    device_class="camera",
    listeners=(
        TcpListener(80, WebApp(redirect_port=443, clock_offset=SKEW)),
        TcpListener(443, WebApp(pages=(*GOOD_PAGES, _security(-30)), credentials=ACCOUNT,
                                hsts=HSTS, clock_offset=SKEW), tls=True),
    ),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, **GOOD_TLS, **every(WEB_CHECKS, PASS),
            CLOCK_SYNC: FAIL, DISCLOSURE: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS},
)

GOOD_WEBUI = Persona(
    name="good-webui",
    description="a camera web UI done right: HTTPS only (lab certificate), every management "
                "path behind Digest authentication, HSTS, a synchronised clock, security.txt",
    device_class="camera",
    listeners=(TcpListener(443, WebApp(pages=(*GOOD_PAGES, _security(180)),
                                       credentials=ACCOUNT, hsts=HSTS), tls=True),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **GOOD_TLS, **WELL_KEPT_WEB},
    expect_verdict=Verdict.CONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS},
)

DISCLOSURE_GATEWAY = Persona(
    name="disclosure-gateway",
    description="a gateway whose HTTPS API on 8443 needs credentials everywhere and "
                "publishes an RFC 9116 security.txt",
    device_class="gateway",
    listeners=(TcpListener(8443, WebApp(
        pages=(("/", Page(status=302, location="/login")), ("/login", Page(LOGIN_FORM)),
               ("/api", _guarded("API")), ("/admin", _guarded("Administration")),
               _security(300)),
        credentials=ACCOUNT, hsts=HSTS), tls=True),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **GOOD_TLS, **WELL_KEPT_WEB},
    expect_verdict=Verdict.CONFORMANT,
    expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS},
)

PERSONAS = (
    WEAK_WEBUI,
    EXPIRED_BROKER,
    SELFSIGNED_CAMERA,
    SKEWED_CLOCK,
    GOOD_WEBUI,
    DISCLOSURE_GATEWAY,
)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
