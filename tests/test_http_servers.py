"""HTTP verdicts on web servers other than nginx, and on answers a device should not give
(issue 15, defects 5, 6 and 11): lighttpd, busybox httpd (router firmware), mini_httpd and nginx
answering in their own ways, each started as a real child process. A scripted peer serves only
what no server sends (Digest challenges that cannot be answered). Everything talks to
127.132.0.x only, never to port 2024."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records
from daemons import (
    Certificate,
    Daemon,
    Listener,
    busybox_httpd,
    device_context,
    issue,
    lighttpd_site,
    mini_httpd,
    nginx_site,
)

from probe.api import run_check
from probe.model import Status
from probe.protocols.http.collectors import SECURITY_TXT

PAGES = {"index.html": "<h1>device</h1>", "admin/index.html": "<h1>admin console</h1>"}
ADMIN_ONLY = {"http.authentication": {"protected_paths": ["/admin", "/admin/", "/setup"]}}


@pytest.fixture
def cert(tmp_path: Path) -> Certificate:
    made, _ = issue(tmp_path, "web", None, names=["127.132.0.1"])
    return made


# ---------------------------------------------------------------------------------------------
# Defect 5: only 401, 403, 404 and redirects to a login page protect a management path
# ---------------------------------------------------------------------------------------------


async def test_a_server_error_or_an_unknown_status_is_never_a_pass(tmp_path: Path) -> None:
    address = "127.132.0.2"
    with nginx_site(tmp_path, address, [8080, 8081, 8082], f"""
          server {{ listen {address}:8080; location / {{ return 404; }}
                    location /admin {{ return 500 "<h1>admin console</h1>"; }} }}
          server {{ listen {address}:8081; location / {{ return 404; }}
                    location /admin {{ return 999 "settings"; }} }}
          server {{ listen {address}:8082; location / {{ return 404; }}
                    location /admin {{ return 500 "oops"; }}
                    location /setup {{ return 200 "<h1>first-time setup</h1>"; }} }}"""), \
            device_context(address, (8080, 8081, 8082)) as ctx:
        findings = {f.target: f for f in await run_check(
            "http.authentication", ctx.device, context=ctx, plan=ADMIN_ONLY)}
    assert {t: f.status for t, f in findings.items()} == {
        "tcp/8080": Status.ERROR, "tcp/8081": Status.ERROR, "tcp/8082": Status.FAIL}
    assert findings["tcp/8080"].evidence["reason"] == "undecided"
    admin = next(p for p in findings["tcp/8080"].evidence["paths"] if p["path"] == "/admin")
    assert admin["outcome"] == "undecided"
    assert admin["why"].startswith("500 with 22 bytes")
    assert admin["body_excerpt"] == "<h1>admin console</h1>"
    assert "999 with 8 bytes" in findings["tcp/8081"].summary
    assert findings["tcp/8082"].evidence["exposed"] == ["/setup"]


def firmware_server(kind: str, tmp: Path, address: str, protected: bool) -> Daemon:
    """One of the small servers on port 80 with PAGES, /admin behind Basic authentication when
    `protected`."""
    users = {"/admin": ("admin", "s3cret-pass")} if protected else {}
    if kind == "busybox":
        return busybox_httpd(tmp, address, 80, PAGES, users)
    if kind == "mini_httpd":
        return mini_httpd(tmp, address, 80, PAGES, users)
    (tmp / "users").write_text("admin:s3cret-pass\n")
    www = tmp / "lighttpd" / "www"
    for path, content in PAGES.items():
        (www / path).parent.mkdir(parents=True, exist_ok=True)
        (www / path).write_text(content)
    auth = (f'auth.backend = "plain"\nauth.backend.plain.userfile = "{tmp / "users"}"\n'
            'auth.require = ("/admin" => ("method" => "basic", "realm" => "device", '
            '"require" => "valid-user"))') if protected else ""
    return lighttpd_site(tmp, address, [80], f'server.bind = "{address}"\nserver.port = 80\n'
                         + auth)


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "open"])
@pytest.mark.parametrize(("kind", "n"), [("busybox", 3), ("mini_httpd", 4), ("lighttpd", 5)])
async def test_small_web_servers_protect_or_expose_the_admin_page(tmp_path: Path, kind: str,
                                                                  n: int, protected: bool
                                                                  ) -> None:
    address = f"127.132.0.{n}"
    with firmware_server(kind, tmp_path, address, protected), \
            device_context(address, (80,)) as ctx:
        (finding,) = await run_check("http.authentication", ctx.device, context=ctx,
                                     plan=ADMIN_ONLY)
    assert finding.status is (Status.PASS if protected else Status.FAIL), finding.summary
    admin = {p["path"]: p for p in finding.evidence["paths"]}["/admin/"]
    assert admin["responses"][-1]["status"] == (401 if protected else 200)


# ---------------------------------------------------------------------------------------------
# Defect 6: a malformed header is its own listener's or path's result, never the device's
# ---------------------------------------------------------------------------------------------


def scan(tmp: Path, devices: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], str]:
    """Scan `devices` with the command line; the records by device id and what went to
    stderr."""
    inventory = tmp / "inventory.yaml"
    inventory.write_text(json.dumps({"devices": devices}))
    done = subprocess.run(
        [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-o", str(tmp / "out"),
         "--exclude-ports", "2024", "--timeout", "3", "--budget", "60", "--no-udp"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ}, cwd=tmp)
    assert done.returncode in (0, 1, 3), done.stderr
    return load_records(tmp / "out"), done.stderr


def results(record: dict[str, Any], check: str) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in record["results"] if r["check"] == check}


def test_a_malformed_location_stays_its_listeners_own_error(tmp_path: Path) -> None:
    nginx_at, lighttpd_at = "127.132.0.6", "127.132.0.7"
    with nginx_site(tmp_path, nginx_at, [80, 8080, 8081], f"""
              server {{ listen {nginx_at}:80; location / {{ return 200 "<h1>admin</h1>"; }} }}
              server {{ listen {nginx_at}:8080; return 302 "http://[::1"; }}
              server {{ listen {nginx_at}:8081; return 302 "http://[{'v' * 3000}]/"; }}"""), \
            lighttpd_site(tmp_path, lighttpd_at, [80], f'server.bind = "{lighttpd_at}"\n'
                          'server.port = 80\nurl.redirect = ("^/(.*)" => '
                          f'"http://{lighttpd_at}:99999/$1")'):
        records, stderr = scan(tmp_path, [{"id": "nginx", "address": nginx_at,
                                           "ports": [80, 8080, 8081]},
                                          {"id": "lighttpd", "address": lighttpd_at,
                                           "ports": [80]}])
    assert "Traceback" not in stderr and "internal error" not in stderr
    nginx, lighttpd = records["nginx"], records["lighttpd"]
    for record in (nginx, lighttpd):
        assert not [r for r in record["results"] if r.get("reason") == "internal"]
    auth = results(nginx, "http.authentication")
    assert auth["tcp/80"]["status"] == "fail"
    assert auth["tcp/8080"]["status"] == "error"
    assert "unusable Location" in auth["tcp/8080"]["summary"]
    assert "Invalid IPv6 URL" in auth["tcp/8080"]["summary"]
    assert auth["tcp/8081"]["status"] == "error"
    assert "IPvFuture address is invalid" in auth["tcp/8081"]["summary"]
    for path in auth["tcp/8081"]["evidence"]["paths"]:  # the 3,000-character host cut short
        assert len(path["unusable_location"]) < 250 and len(path["why"]) < 300
    cleartext = results(nginx, "http.cleartext")
    assert (cleartext["tcp/80"]["status"], cleartext["tcp/8080"]["status"]) == ("fail", "error")
    assert {r["status"] for r in results(nginx, "monitor.clock-sync").values()} == {"pass"}
    (bad_port,) = results(lighttpd, "http.authentication").values()
    assert bad_port["status"] == "error"
    assert "Port out of range" in bad_port["summary"]
    assert results(lighttpd, "http.cleartext")["tcp/80"]["status"] == "error"


def digest_challenge(header: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                              Any]:
    """A scripted peer: every request gets 401 with `header` as its Digest challenge."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the probe closed its connection
                return
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                         b"WWW-Authenticate: " + header.encode() + b"\r\n\r\n")
            await writer.drain()
    return serve


@pytest.mark.parametrize(("header", "why"), [
    ('Digest realm="device", nonce="abc", algorithm=SHA3', "KeyError"),
    ('Digest realm="device", nonce="abc", qop="auth-int"', "NotImplementedError"),
    ('Digest realm="device", nonce="abc", stale', "ValueError"),
], ids=["unknown-algorithm", "auth-int", "field-without-value"])
async def test_a_digest_challenge_that_cannot_be_answered_is_that_trials_error(
        header: str, why: str) -> None:
    address = "127.132.0.8"
    async with Listener(address, 8080, digest_challenge(header)):
        with device_context(address, (8080,)) as ctx:
            (finding,) = await run_check("http.default-credentials", ctx.device, context=ctx, plan={
                "http.default-credentials": {"pairs": [["admin", "admin"]], "pace_seconds": 0},
                **ADMIN_ONLY})
    assert finding.status is Status.ERROR
    assert "unusable WWW-Authenticate challenge" in finding.summary
    assert why in finding.summary


async def test_a_date_too_large_to_read_fails_clock_sync_on_its_listener(
        tmp_path: Path) -> None:
    address = "127.132.0.9"
    with lighttpd_site(tmp_path, address, [80, 8080], f'server.bind = "{address}"\n'
                       f'server.port = 80\n$SERVER["socket"] == "{address}:8080" {{\n'
                       'setenv.set-response-header = ("Date" => '
                       '"Mon, 01 Jan 99999999999999999999 00:00:00 GMT")\n}'), \
            device_context(address, (80, 8080)) as ctx:
        findings = {f.target: f for f in await run_check(
            "monitor.clock-sync", ctx.device, context=ctx)}
    assert findings["tcp/80"].status is Status.PASS
    assert findings["tcp/8080"].status is Status.FAIL
    assert "unreadable Date header" in findings["tcp/8080"].summary


async def test_a_max_age_of_thousands_of_digits_is_read_as_the_largest(
        tmp_path: Path, cert: Certificate) -> None:
    address = "127.132.0.1"
    with lighttpd_site(tmp_path, address, [443], f'server.bind = "{address}"\n'
                       f'server.port = 443\nssl.engine = "enable"\nssl.pemfile = "{cert.cert}"\n'
                       f'ssl.privkey = "{cert.key}"\nsetenv.add-response-header = ('
                       f'"Strict-Transport-Security" => "max-age={"9" * 5000}")'), \
            device_context(address, (443,)) as ctx:
        (finding,) = await run_check("http.hsts", ctx.device, context=ctx)
    assert finding.status is Status.PASS
    assert finding.evidence["max_age"] == 2**31
    assert len(finding.evidence["strict_transport_security"]) <= 200


# ---------------------------------------------------------------------------------------------
# Defect 11: security.txt read per RFC 9116, on lighttpd (GnuTLS) over HTTPS
# ---------------------------------------------------------------------------------------------


def stamp(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("content", "status", "said"), [
    (f"Contact: javascript:alert(1)\nExpires: {stamp(180)}\n", Status.FAIL,
     "javascript:alert(1) is a javascript: URI"),
    (f"Contact: http://vendor.example/psirt\nExpires: {stamp(180)}\n", Status.FAIL,
     "is an http: URI"),
    (f"Contact: psirt@vendor.example\nExpires: {stamp(180)}\n", Status.FAIL, "not a URI"),
    (f"Contact: mailto:psirt@vendor.example\nContact: ftp://x\nExpires: {stamp(180)}\n",
     Status.FAIL, "1 invalid Contact field(s): ftp://x is a ftp: URI"),
    ("Contact: mailto:psirt@vendor.example\n", Status.FAIL, "no Expires field"),
    (f"Contact: mailto:psirt@vendor.example\nExpires: {stamp(180)}\nExpires: {stamp(90)}\n",
     Status.FAIL, "more than one Expires field"),
    ("Contact: mailto:psirt@vendor.example\nExpires: 2099-01-01T00:00:00\n", Status.FAIL,
     "an unreadable Expires date"),
    (f"Contact: mailto:psirt@vendor.example\nExpires: {stamp(-1)}\n", Status.FAIL, "expired on"),
    ("Contact: mailto:psirt@vendor.example\nExpires: 2099-01-01T00:00:00Z\n", Status.PASS,
     "more than a year ahead, against RFC 9116's advice"),
    (f"Contact: https://vendor.example/psirt\nContact: tel:+1-201-555-0123\n"
     f"Expires: {stamp(180)}\n", Status.PASS, "names 2 valid contact(s)"),
], ids=["javascript", "http", "bare-address", "one-of-two-invalid", "no-expires",
        "two-expires", "no-time-zone", "expired", "years-ahead", "good"])
async def test_security_txt_per_rfc_9116(tmp_path: Path, cert: Certificate, content: str,
                                         status: Status, said: str) -> None:
    address = "127.132.0.1"
    www = tmp_path / "lighttpd" / "www" / SECURITY_TXT.lstrip("/")
    www.parent.mkdir(parents=True)
    www.write_text(content)
    with lighttpd_site(tmp_path, address, [443], f'server.bind = "{address}"\n'
                       f'server.port = 443\nssl.engine = "enable"\nssl.pemfile = "{cert.cert}"\n'
                       f'ssl.privkey = "{cert.key}"'), \
            device_context(address, (443,)) as ctx:
        (finding,) = await run_check("monitor.vulnerability-disclosure", ctx.device, context=ctx)
    assert finding.status is status, finding.summary
    assert said in finding.summary
    assert ("expires_note" in finding.evidence) is ("more than a year" in said)
