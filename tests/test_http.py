"""The HTTP checks and the two 6.5 checks read over HTTP(S), against nginx and the lab's
services (its web application, its hostile peers, small HTTP peers) served on the test's loop.
Everything talks to 127.93.2.x only."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemons import Certificate, Listener, device_context, issue, nginx_site

from probe.api import run_check
from probe.context import DeviceContext
from probe.lab.servers import StreamServer, StreamService
from probe.lab.servers_hostile import Garbage
from probe.lab.servers_tls import (
    LOGIN_FORM,
    Page,
    WebApp,
    persona_certificate,
    security_txt,
    server_context,
)
from probe.model import Status
from probe.protocols.http.checks import AuthenticationParams
from probe.protocols.http.collectors import (
    MAX_BODY,
    http_endpoints,
    http_protected,
    http_roots,
    request,
)
from probe.protocols.http.collectors import security_txt as security_txt_visits

FUTURE = dt.datetime.now(dt.UTC) + dt.timedelta(days=180)
PAST = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
CREDENTIALS = "http.default-credentials"


def trying(pairs: list[list[str]]) -> dict[str, dict[str, Any]]:
    return {CREDENTIALS: {"pairs": pairs, "pace_seconds": 0}}


def site(tmp: Path, address: str, port: int, cert: Certificate | None, body: str,
         name: str) -> Any:
    ssl = f" ssl; ssl_certificate {cert.cert}; ssl_certificate_key {cert.key}" if cert else ""
    return nginx_site(tmp, address, [port], f"""
      server {{ listen {address}:{port}{ssl}; default_type text/plain;
        {body} }}""", name=name)


@pytest.fixture
def cert(tmp_path: Path) -> Certificate:
    made, _ = issue(tmp_path, "web", None, names=["127.93.2.1"])
    return made


@asynccontextmanager
async def web_app(address: str, port: int, app: StreamService, tls: bool = True
                  ) -> AsyncIterator[StreamServer]:
    """A lab service (its web application unless said otherwise) on the test's loop, over
    HTTPS with a vendor certificate unless `tls` is False."""
    server = StreamServer(app)
    context = server_context(persona_certificate("vendor", address), "modern") if tls else None
    await server.start(address, port, context)
    try:
        yield server
    finally:
        await server.stop()


# ---------------------------------------------------------------------------------------------
# http.cleartext
# ---------------------------------------------------------------------------------------------


async def test_cleartext_fails_on_content_and_passes_on_redirect_or_nothing(
        tmp_path: Path) -> None:
    address = "127.93.2.2"
    with nginx_site(tmp_path, address, [80, 8080, 8000], f"""
          server {{ listen {address}:80; location / {{ return 200 "status page"; }} }}
          server {{ listen {address}:8080; return 301 https://$host$request_uri; }}
          server {{ listen {address}:8000; location / {{ return 404; }} }}"""), \
            device_context(address, (80, 8000, 8080)) as ctx:
        findings = await run_check("http.cleartext", ctx.device, context=ctx)
    by_target = {f.target: f for f in findings}
    assert {t: f.status for t, f in by_target.items()} == {
        "tcp/80": Status.FAIL, "tcp/8000": Status.PASS, "tcp/8080": Status.PASS}
    assert "redirects to HTTPS" in by_target["tcp/8080"].summary
    assert by_target["tcp/80"].evidence["responses"][0]["status"] == 200


async def test_cleartext_is_not_applicable_without_plain_http(tmp_path: Path,
                                                              cert: Certificate) -> None:
    with site(tmp_path, "127.93.2.1", 443, cert, 'location / { return 200 "ok"; }', "tls"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (finding,) = await run_check("http.cleartext", ctx.device, context=ctx)
    assert finding.status is Status.NOT_APPLICABLE


# ---------------------------------------------------------------------------------------------
# http.authentication and http.default-credentials
# ---------------------------------------------------------------------------------------------


def protected_site(tmp: Path, password: str) -> str:
    root = tmp / "www"
    root.mkdir(exist_ok=True)
    (root / "admin.html").write_text("<h1>admin</h1>")
    users = tmp / "htpasswd"
    users.write_text(f"operator:{{PLAIN}}{password}\n")
    return f"""
        root {root};
        location = /admin {{ auth_basic "device"; auth_basic_user_file {users};
                             try_files /admin.html =404; }}
        location /api {{ return 403; }}
        location /config {{ return 302 /login?next=/config; }}
        location = /login {{ default_type text/html; return 200 '{LOGIN_FORM.strip()}'; }}
        location /setup {{ return 301 /setup/; }}
        location = /setup/ {{ default_type text/html; return 200 '{LOGIN_FORM.strip()}'; }}
        location / {{ return 404; }}"""


async def test_authentication_passes_when_every_path_is_protected(
        tmp_path: Path, cert: Certificate) -> None:
    with site(tmp_path, "127.93.2.1", 443, cert, protected_site(tmp_path, "Str0ng!"), "auth"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (finding,) = await run_check("http.authentication", ctx.device, context=ctx)
    assert finding.status is Status.PASS, finding.summary
    why = {p["path"]: p["why"] for p in finding.evidence["paths"]}
    assert why["/admin"] == "401"
    assert why["/api"] == "403"
    assert why["/config"].startswith("a login page (/login")
    assert why["/setup"].startswith("a login page")


async def test_authentication_fails_listing_exposed_paths(tmp_path: Path) -> None:
    address = "127.93.2.3"
    with nginx_site(tmp_path, address, [8080], f"""
          server {{ listen {address}:8080; location / {{ return 200 "open"; }}
                    location /api {{ return 404; }} }}"""), \
            device_context(address, (8080,)) as ctx:
        (finding,) = await run_check("http.authentication", ctx.device, context=ctx)
        (narrow,) = await run_check(
            "http.authentication", ctx.device, context=ctx, protected_paths=["/api"])
    assert finding.status is Status.FAIL
    assert "/api" not in finding.evidence["exposed"]
    assert {"/admin", "/config", "/cgi-bin/", "/setup"} <= set(finding.evidence["exposed"])
    assert finding.target == "tcp/8080"
    # the check's own paths reach its collector, on the same context: only /api is asked
    assert narrow.status is Status.PASS
    assert [p["path"] for p in narrow.evidence["paths"]] == ["/api"]


async def test_protected_paths_come_from_the_profile(tmp_path: Path) -> None:
    address = "127.93.2.4"
    params = {"http.authentication": {"protected_paths": ["/api", "/secret"]}}
    with nginx_site(tmp_path, address, [8080], f"""
          server {{ listen {address}:8080; location / {{ return 200 "open"; }}
                    location /api {{ return 401; }} location /secret {{ return 403; }} }}"""), \
            device_context(address, (8080,)) as ctx:
        (finding,) = await run_check("http.authentication", ctx.device, context=ctx, plan=params)
    assert finding.status is Status.PASS
    assert [p["path"] for p in finding.evidence["paths"]] == ["/api", "/secret"]


async def test_default_credentials_basic(tmp_path: Path, cert: Certificate,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pairs = [["admin", "admin"], ["operator", "vendor-default-77"], ["root", "root"]]
    with site(tmp_path, "127.93.2.1", 443, cert,
              protected_site(tmp_path, "vendor-default-77"), "basic"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (weak,) = await run_check(CREDENTIALS, ctx.device, context=ctx, plan=trying(pairs))
        connections = ctx.connections
    assert weak.status is Status.FAIL
    assert weak.evidence["accepted_username"] == "operator"
    assert weak.evidence["scheme"] == "basic" and weak.evidence["path"] == "/admin"
    assert [a["username"] for a in weak.evidence["attempts"]] == ["admin", "operator"]
    assert "vendor-default-77" not in json.dumps(weak.evidence) + weak.summary + caplog.text
    assert connections > 0


async def test_default_credentials_refused_and_not_applicable(tmp_path: Path,
                                                              cert: Certificate) -> None:
    pairs = [["admin", "admin"], ["operator", "operator"]]
    with site(tmp_path, "127.93.2.1", 443, cert, protected_site(tmp_path, "L0ng&unique"),
              "refused"), device_context("127.93.2.1", (443,)) as ctx:
        (strong,) = await run_check(CREDENTIALS, ctx.device, context=ctx, plan=trying(pairs))
    assert strong.status is Status.PASS
    assert len(strong.evidence["attempts"]) == 2
    with nginx_site(tmp_path, "127.93.2.5", [8080], """
          server { listen 127.93.2.5:8080; location / { return 404; } }""", name="none"), \
            device_context("127.93.2.5", (8080,)) as ctx:
        (none,) = await run_check(CREDENTIALS, ctx.device, context=ctx, plan=trying(pairs))
    assert none.status is Status.NOT_APPLICABLE


@pytest.mark.parametrize(("password", "status"), [("admin", Status.FAIL),
                                                  ("n0t-a-default", Status.PASS)])
async def test_default_credentials_digest(password: str, status: Status) -> None:
    app = WebApp(pages=(("/admin", Page("secret", auth="digest")),),
                 credentials=("admin", password))
    async with web_app("127.93.2.6", 8443, app):
        with device_context("127.93.2.6", (8443,)) as ctx:
            (finding,) = await run_check(CREDENTIALS, ctx.device, context=ctx,
                                         plan=trying([["root", "root"], ["admin", "admin"]]))
    assert finding.status is status
    assert finding.evidence["scheme"] == "digest"


# ---------------------------------------------------------------------------------------------
# http.hsts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "status"), [
    ('add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;',
     Status.PASS),
    ('add_header Strict-Transport-Security "max-age=300" always;', Status.FAIL),
    ("", Status.FAIL),
])
async def test_hsts(tmp_path: Path, cert: Certificate, header: str, status: Status) -> None:
    with site(tmp_path, "127.93.2.1", 443, cert,
              f'{header} location / {{ return 200 "ok"; }}', "hsts"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (finding,) = await run_check("http.hsts", ctx.device, context=ctx)
    assert finding.status is status
    assert finding.target == "tcp/443"


async def test_hsts_not_applicable_without_https(tmp_path: Path) -> None:
    with nginx_site(tmp_path, "127.93.2.7", [8080], """
          server { listen 127.93.2.7:8080; location / { return 200 "ok"; } }"""), \
            device_context("127.93.2.7", (8080,)) as ctx:
        (finding,) = await run_check("http.hsts", ctx.device, context=ctx)
        (disclosure,) = await run_check("monitor.vulnerability-disclosure", ctx.device, context=ctx)
    assert finding.status is Status.NOT_APPLICABLE
    assert disclosure.status is Status.NOT_APPLICABLE


# ---------------------------------------------------------------------------------------------
# monitor.clock-sync
# ---------------------------------------------------------------------------------------------


async def test_clock_sync_passes_on_nginx(tmp_path: Path, cert: Certificate) -> None:
    with site(tmp_path, "127.93.2.1", 443, cert, 'location / { return 200 "ok"; }', "clock"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (finding,) = await run_check("monitor.clock-sync", ctx.device, context=ctx)
    assert finding.status is Status.PASS
    assert abs(finding.evidence["skew_seconds"]) < 60


@pytest.mark.parametrize(("offset", "limit", "status"), [
    (3 * 3600.0, 60, Status.FAIL), (-3 * 3600.0, 60, Status.FAIL),
    (3 * 3600.0, 4 * 3600, Status.PASS), (None, 60, Status.FAIL),
])
async def test_clock_sync_on_a_skewed_device(offset: float | None, limit: int,
                                             status: Status) -> None:
    app = WebApp(pages=(("/", Page("home")),), clock_offset=offset)
    async with web_app("127.93.2.8", 443, app):
        with device_context("127.93.2.8", (443,)) as ctx:
            (finding,) = await run_check(
                "monitor.clock-sync", ctx.device, context=ctx, max_skew_seconds=limit)
    assert finding.status is status
    if offset is not None:
        assert abs(finding.evidence["skew_seconds"] - offset) < 30
    else:
        assert "no Date header" in finding.summary


# ---------------------------------------------------------------------------------------------
# monitor.vulnerability-disclosure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "status", "why"), [
    (security_txt(FUTURE), Status.PASS, "contact"),
    (security_txt(PAST), Status.FAIL, "expired"),
    ("Contact: mailto:psirt@vendor.example\n", Status.FAIL, "no Expires"),
    (None, Status.FAIL, "not served"),
])
async def test_vulnerability_disclosure(tmp_path: Path, cert: Certificate, content: str | None,
                                        status: Status, why: str) -> None:
    body = 'location / { return 404; }'
    if content is not None:
        escaped = content.replace("\n", "\\n")
        body += f' location = /.well-known/security.txt {{ return 200 "{escaped}"; }}'
    with site(tmp_path, "127.93.2.1", 443, cert, body, "security"), \
            device_context("127.93.2.1", (443,)) as ctx:
        (finding,) = await run_check("monitor.vulnerability-disclosure", ctx.device, context=ctx)
    assert finding.status is status
    assert why in finding.summary


# ---------------------------------------------------------------------------------------------
# Sharing, naming
# ---------------------------------------------------------------------------------------------


async def test_each_url_is_fetched_once_per_device(tmp_path: Path, cert: Certificate) -> None:
    body = (f'add_header Strict-Transport-Security "max-age=31536000" always; '
            f'location / {{ return 200 "ok"; }} location = /.well-known/security.txt '
            f'{{ return 200 "{security_txt(FUTURE)}"; }}').replace("\n", "\\n")
    with site(tmp_path, "127.93.2.1", 443, cert, body, "shared"), \
            device_context("127.93.2.1", (443,)) as ctx:
        await ctx.observe(http_roots)
        await ctx.observe(security_txt_visits)
        before = ctx.connections
        results = [await run_check(cid, ctx.device, context=ctx) for cid in (
            "http.hsts", "monitor.clock-sync", "monitor.vulnerability-disclosure",
            "http.cleartext")]
        after = ctx.connections
    assert before == after
    assert [r[0].status for r in results] == [Status.PASS, Status.PASS, Status.PASS,
                                              Status.NOT_APPLICABLE]


async def test_host_header_and_server_name_carry_the_hostname(tmp_path: Path,
                                                              cert: Certificate) -> None:
    with site(tmp_path, "127.93.2.1", 443, cert, """
          location / { if ($host != "cam-7.plant.test") { return 421; }
                       if ($ssl_server_name != "cam-7.plant.test") { return 421; }
                       return 200 "ok"; }""", "named"), \
            device_context("127.93.2.1", (443,), hostname="cam-7.plant.test") as ctx:
        (named,) = await ctx.observe(http_roots)
    with site(tmp_path, "127.93.2.1", 443, cert, """
          location / { if ($host != "127.93.2.1") { return 421; } return 200 "ok"; }""",
              "bare"), device_context("127.93.2.1", (443,)) as ctx:
        (bare,) = await ctx.observe(http_roots)
    assert named.final.status == 200
    assert bare.final.status == 200


# ---------------------------------------------------------------------------------------------
# Keep-alive: one connection per listener for the GETs that run together
# ---------------------------------------------------------------------------------------------


async def web_visits(ctx: DeviceContext) -> tuple[list[dict[str, Any]], int]:
    """The evidence of the three collectors that the engine starts together after discovery,
    and how many connections they opened."""
    await ctx.observe(http_endpoints)
    before = ctx.connections
    paths = AuthenticationParams().protected_paths
    groups = await asyncio.gather(ctx.observe(http_roots), ctx.observe(http_protected, paths=paths),
                                  ctx.observe(security_txt_visits))
    return [v.evidence() for group in groups for v in group], ctx.connections - before


def logged_connections(log: Path, skip: int) -> dict[str, list[str]]:
    """nginx's connection serial number of each request after the first `skip`, by port."""
    out: dict[str, list[str]] = {}
    for line in log.read_text().splitlines()[skip:]:
        port, connection = line.split()
        out.setdefault(port, []).append(connection)
    return out


@pytest.mark.parametrize("keepalive", ["75s", "0"])
async def test_requests_to_a_listener_share_a_keep_alive_connection(
        tmp_path: Path, cert: Certificate, keepalive: str) -> None:
    """HTTP on 80 and HTTPS on 443 of nginx, 23 GETs: with keep-alive, one or two connections
    per listener; with `keepalive_timeout 0` (nginx closes after every response), one per
    request; the same evidence either way."""
    address = "127.93.2.10"
    log = tmp_path / f"requests-{keepalive}.log"
    expires = security_txt(FUTURE).replace("\n", "\\n")
    http = f"""
        log_format connections '$server_port $connection';
        server {{ listen {address}:80; listen {address}:443 ssl; default_type text/plain;
          ssl_certificate {cert.cert}; ssl_certificate_key {cert.key};
          access_log {log} connections; keepalive_timeout {keepalive};
          location = /.well-known/security.txt {{ return 200 "{expires}"; }}
          {protected_site(tmp_path, "Str0ng!")} }}"""
    with nginx_site(tmp_path, address, [80, 443], http, name=f"keepalive-{keepalive}"), \
            device_context(address, (80, 443)) as ctx:
        await ctx.observe(http_endpoints)
        discovery = len(log.read_text().splitlines())
        evidence, opened = await web_visits(ctx)
    served = logged_connections(log, discovery)
    requests = sum(len(c) for c in served.values())
    assert requests == 23 == sum(len(v["responses"]) for v in evidence)
    assert opened == sum(len(set(c)) for c in served.values())
    if keepalive == "0":
        assert opened == requests
    else:
        assert {port: len(set(c)) <= 2 for port, c in served.items()} == {"80": True,
                                                                          "443": True}
    assert not [r for v in evidence for r in v["responses"] if "error" in r]
    by_path = {(v["path"], len(v["responses"])): v["responses"][-1]["status"]
               for v in evidence}
    assert by_path[("/admin", 1)] == 401 and by_path[("/api", 1)] == 403
    assert by_path[("/config", 2)] == 200 and by_path[("/setup", 2)] == 200
    assert by_path[("/.well-known/security.txt", 1)] == 200


async def test_requests_sharing_a_connection_share_no_cookies(tmp_path: Path) -> None:
    """A cookie set on `/` is not sent with the requests made after it on the same
    connection (the redirect from /admin to /panel): each GET sends what it would send
    alone."""
    address = "127.93.2.14"
    with nginx_site(tmp_path, address, [8080], f"""
          server {{ listen {address}:8080; default_type text/plain;
                    location = / {{ add_header Set-Cookie "session=granted"; return 200 "home"; }}
                    location = /admin {{ return 302 /panel; }}
                    location = /panel {{ if ($cookie_session) {{ return 200 "open"; }}
                                         return 401; }} }}""", name="cookies"), \
            device_context(address, (8080,)) as ctx:
        evidence, opened = await web_visits(ctx)
    statuses = {v["path"]: [r["status"] for r in v["responses"]] for v in evidence}
    assert (statuses["/"], statuses["/admin"], opened) == ([200], [302, 401], 1)


async def test_a_dropped_keep_alive_connection_is_sent_again(tmp_path: Path) -> None:
    """A server that answers one request per connection without saying so, and drops the
    connection when the next request comes: a request dropped so is sent again on a new
    connection, and every path gets its own answer."""
    heads: list[bytes] = []

    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            body = b"page " + heads[-1].split(b" ")[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError:
            return

    address = "127.93.2.11"
    async with Listener(address, 8080, one_answer) as listener:
        with device_context(address, (8080,)) as ctx:
            await ctx.observe(http_endpoints)
            accepted, asked = listener.accepted, len(heads)
            visits = await ctx.observe(http_protected, paths=("/a", "/b", "/c"))
        accepted, asked = listener.accepted - accepted, len(heads) - asked
    assert [(v.final.status, v.final.body) for v in visits] == [
        (200, b"page /a"), (200, b"page /b"), (200, b"page /c")]
    assert accepted == 3 < asked


async def test_a_truncated_body_does_not_leave_its_connection_for_reuse(tmp_path: Path) -> None:
    address = "127.93.2.12"
    (tmp_path / "big").write_bytes(b"x" * (MAX_BODY * 2))
    with nginx_site(tmp_path, address, [8080], f"""
          server {{ listen {address}:8080; default_type text/plain;
                    location = /big {{ root {tmp_path}; }}
                    location = /small {{ return 200 "small"; }} }}""", name="truncated"), \
            device_context(address, (8080,)) as ctx:
        big, small = await asyncio.gather(request(ctx, 8080, False, "/big"),
                                          request(ctx, 8080, False, "/small"))
        connections = ctx.connections
    assert big.truncated and big.body == b"x" * MAX_BODY
    assert (small.status, small.body, small.error) == (200, b"small", None)
    assert connections == 2


async def test_the_lab_web_application_keeps_its_connection(tmp_path: Path) -> None:
    """The lab's WebApp answers every GET of a scan over one HTTPS connection, Digest
    challenge and redirects included."""
    app = WebApp(pages=(("/", Page("home")), ("/admin", Page("secret", auth="digest")),
                        ("/config", Page(status=302, location="/login")),
                        ("/login", Page(LOGIN_FORM))), credentials=("admin", "admin"))
    async with web_app("127.93.2.13", 443, app):
        with device_context("127.93.2.13", (443,)) as ctx:
            evidence, opened = await web_visits(ctx)
    assert opened == 1
    assert sum(len(v["responses"]) for v in evidence) == 11
    statuses = {v["path"]: v["responses"][-1]["status"] for v in evidence}
    assert statuses["/admin"] == 401 and statuses["/config"] == 200 and statuses["/"] == 200


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 as devices speak it: body framing, connections that end, answers that are not HTTP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_chunked_and_close_delimited_bodies(tmp_path: Path, cert: Certificate,
                                                  tls: bool) -> None:
    """nginx with SSI answers without a length: chunked, and with `chunked_transfer_encoding
    off` a body that ends when nginx closes. Chunked answers share one connection; a body
    delimited by the close costs its connection; a chunked body past MAX_BODY is cut there and
    its connection is not used again."""
    address, port = "127.93.2.15", 443 if tls else 80
    root = tmp_path / "www"
    root.mkdir()
    page = "chunk of a page " * 1000
    (root / "page.html").write_text(page)
    (root / "big.html").write_text("x" * (MAX_BODY * 2))
    listen = f"{address}:{port}" + (" ssl" if tls else "")
    with nginx_site(tmp_path, address, [port], f"""
          server {{ listen {listen}; ssl_certificate {cert.cert};
                    ssl_certificate_key {cert.key}; root {root}; default_type text/html; ssi on;
            location /chunked/ {{ try_files /page.html =404; }}
            location /big/ {{ try_files /big.html =404; }}
            location /close/ {{ chunked_transfer_encoding off; try_files /page.html =404; }} }}
          """, name="framing"), device_context(address, (port,)) as ctx:
        counts = []
        answers = []
        for paths in (["/chunked/1", "/chunked/2", "/chunked/3"],
                      ["/close/1", "/close/2", "/close/3"], ["/big/1", "/chunked/4"]):
            before = ctx.connections
            answers.append(await asyncio.gather(*(request(ctx, port, tls, p) for p in paths)))
            counts.append(ctx.connections - before)
    chunked, closed, (big, after) = answers
    assert counts == [1, 3, 2]
    for answer in [*chunked, after]:
        assert (answer.status, answer.body.decode(), answer.error) == (200, page, None)
        assert answer.header("transfer-encoding") == "chunked"
        assert not answer.truncated
    for answer in closed:
        assert (answer.status, answer.body.decode(), answer.error) == (200, page, None)
        assert answer.header("content-length") is None
        assert answer.header("transfer-encoding") is None
    assert big.truncated and big.body == b"x" * MAX_BODY


@dataclass(frozen=True)
class OneAnswer:
    """An HTTP peer that answers the first request of a connection (`status_line`, `headers`,
    a body naming the path, with a Content-Length if `length`) and never another: it hangs up
    (`hang_up`) or reads on in silence."""

    status_line: bytes
    headers: bytes = b""
    length: bool = True
    hang_up: bool = True

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = b"page " + head.split(b" ")[1]
        length = b"Content-Length: %d\r\n" % len(body) if self.length else b""
        writer.write(self.status_line + b"\r\n" + self.headers + length + b"\r\n" + body)
        await writer.drain()
        if not self.hang_up:
            while await reader.read(4096):
                pass


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("peer", [
    OneAnswer(b"HTTP/1.1 200 OK"),
    OneAnswer(b"HTTP/1.1 200 OK", length=False),
    OneAnswer(b"HTTP/1.1 200 OK", b"Connection: close\r\n", hang_up=False),
    OneAnswer(b"HTTP/1.0 200 OK", hang_up=False),
], ids=["hangs-up", "ends-body-by-closing", "says-close-stays", "http-1.0-stays"])
async def test_a_server_that_ends_each_connection_after_one_answer(peer: OneAnswer,
                                                                   tls: bool) -> None:
    """One answer per connection, said (Connection: close, HTTP/1.0) or not (the device hangs
    up): each path gets its own answer on a connection of its own, none waits on a connection
    that will never answer again."""
    address, port = "127.93.2.16", 8443 if tls else 8080
    async with web_app(address, port, peer, tls):
        with device_context(address, (port,)) as ctx:
            await ctx.observe(http_endpoints)
            before = ctx.connections
            visits = await ctx.observe(http_protected, paths=("/a", "/b", "/c"))
            opened = ctx.connections - before
    assert [(v.final.status, v.final.body, v.final.error) for v in visits] == [
        (200, b"page /a", None), (200, b"page /b", None), (200, b"page /c", None)]
    assert opened == 3


@dataclass(frozen=True)
class Answer:
    """Answers the first request of a connection with `data`, then reads on in silence."""

    data: bytes

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.data)
        await writer.drain()
        while await reader.read(4096):
            pass


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize(("peer", "error"), [
    (Garbage(seed=8082), "no answer before the timeout"),
    (Answer(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"),
     "RemoteProtocolError: illegal status line: bytearray(b'RTSP/1.0 200 OK')"),
    (Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
     "no answer before the timeout"),
], ids=["noise", "another-protocol", "body-never-completed"])
async def test_answers_that_are_not_http_end_in_an_error(peer: StreamService, error: str,
                                                         tls: bool) -> None:
    """Noise without a line end (the lab's hostile Garbage), another protocol's head, a body
    shorter than its length: no status, the error, and a connection per request (none is used
    again)."""
    address, port = "127.93.2.17", 8443 if tls else 8080
    async with web_app(address, port, peer, tls):
        with device_context(address, (port,), timeout=0.5) as ctx:
            answers = await asyncio.gather(*(request(ctx, port, tls, p) for p in ("/a", "/b")))
            connections = ctx.connections
    assert [(a.status, a.error) for a in answers] == [(None, error), (None, error)]
    assert connections == 2


async def test_noise_on_an_https_listener_fails_the_handshake() -> None:
    """The lab's Garbage without TLS where HTTPS is expected: the handshake fails at once."""
    address = "127.93.2.18"
    async with web_app(address, 8443, Garbage(seed=8443), tls=False):
        with device_context(address, (8443,)) as ctx:
            answer = await request(ctx, 8443, True, "/")
    assert (answer.status, answer.error) == (None, "ConnectError: TLS handshake failed: SSLError")
