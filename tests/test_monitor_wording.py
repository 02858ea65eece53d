"""Which log lines count as "the device reported this failed login" (issue 15, defect 8):
`probe.monitoring.collectors.FAILURE_RULE` held to the real failed-login lines of six daemons on
127.135.2.x. sshd, dropbear, apache2 and mosquitto write their line to a log file and the line
goes to the matcher; lighttpd (error log piped to `logger`) and nginx (error_log to syslog)
send theirs to the probe's UDP sink while the probe's own canary runs, end to end."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paramiko
import pytest
from daemons import (
    Daemon,
    bound,
    monitored_context,
    mosquitto_logging,
    nginx_site,
    start,
)

from probe.api import run_check
from probe.model import Status
from probe.monitoring.collectors import Box, new_tag
from probe.monitoring.sinks import Event

SSHD = "127.135.2.1"
DROPBEAR = "127.135.2.2"
APACHE = "127.135.2.3"
MOSQUITTO = "127.135.2.4"
LIGHTTPD = "127.135.2.5"
NGINX = "127.135.2.6"
CLIENT = "127.135.2.8"
SINK = "127.135.2.9"
AUTH = "monitor.auth-failure-event"
TRANSPORT = "monitor.event-transport"
EVENTS = {AUTH: {"event_timeout": 10}}
LOG_ROUNDS = 250  # x 20 ms: how long a daemon may take to write its line


def counts(line: str, tag: str, source: str | None = None) -> bool:
    """Whether `line`, delivered by the device itself, reports the attempt tagged `tag` (made
    from `source`, for protocols where the probe knows its source port)."""
    box = Box(tag, "127.0.0.1")
    if source is not None:
        box.add_source(source)
    box.offer(Event("syslog", "syslog over UDP", False, line, 0.0, "127.0.0.1:514"))
    return bool(box.matched)


def logged(daemon: Daemon, pattern: str) -> str:
    """The first line of the daemon's log that matches `pattern` (waiting for it)."""
    for _ in range(LOG_ROUNDS):
        for line in daemon.log.read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                return line
        time.sleep(0.02)
    raise AssertionError(f"{daemon.name} never logged {pattern!r}: "
                         f"{daemon.log.read_text()[-2000:]}")


def ssh_login(address: str, port: int, user: str) -> str:
    """A failed password login from a socket bound to CLIENT; its source address:port."""
    with socket.create_connection((address, port), timeout=10,
                                  source_address=(CLIENT, 0)) as sock:
        source = "{}:{}".format(*sock.getsockname())
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            with pytest.raises(paramiko.AuthenticationException):
                transport.auth_password(user, "wrong-Zx81-password")
        finally:
            transport.close()
    return source


# ---------------------------------------------------------------------------------------------
# sshd, dropbear: the line names the source (and sshd the user)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Daemon]:
    key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30)
    conf = tmp_path / "sshd_config"
    conf.write_text(f"ListenAddress {SSHD}:2222\nHostKey {key}\nPidFile {tmp_path}/sshd.pid\n"
                    "UsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
                    "LogLevel INFO\nMaxAuthTries 2\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    with start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], tmp_path, SSHD,
               [(2222, "tcp")]) as daemon:
        yield daemon


def test_sshd_failed_password_counts(sshd: Daemon) -> None:
    tag, _ = new_tag()
    source = ssh_login(SSHD, 2222, tag)
    line = logged(sshd, r"Failed password for invalid user")
    assert tag in line and source.replace(":", " port ") in line
    assert counts(line, tag) and counts(line, "iotprobe-000000000000", source)
    assert not counts(line, "iotprobe-000000000000")  # another attempt's report


def test_dropbear_names_no_one_for_an_unknown_user_and_the_source_for_a_known_one(
        tmp_path: Path) -> None:
    key = tmp_path / "dropbear_ed25519"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True,
                   capture_output=True, timeout=30)
    argv = ["dropbear", "-F", "-E", "-p", f"{DROPBEAR}:2223", "-r", str(key),
            "-P", str(tmp_path / "dropbear.pid")]
    with start("dropbear", argv, tmp_path, DROPBEAR, [(2223, "tcp")]) as daemon:
        tag, _ = new_tag()
        unknown = ssh_login(DROPBEAR, 2223, tag)
        nameless = logged(daemon, r"nonexistent user")
        known = ssh_login(DROPBEAR, 2223, "root")
        named = logged(daemon, rf"for 'root' from {re.escape(known)}")
    assert unknown not in nameless and tag not in nameless
    assert not counts(nameless, tag, unknown)  # "Login attempt for nonexistent user"
    assert counts(named, tag, known) and not counts(named, tag)


# ---------------------------------------------------------------------------------------------
# apache2, mosquitto: the log file's line
# ---------------------------------------------------------------------------------------------


def test_apache_user_not_found_counts(tmp_path: Path) -> None:
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "index.html").write_text("settings\n")
    users = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-cb", str(users), "admin", "web-Kq2-secret"], check=True,
                   capture_output=True, timeout=30)
    modules = "/usr/lib/apache2/modules"
    conf = tmp_path / "apache2.conf"
    conf.write_text("\n".join([
        f"ServerRoot {tmp_path}", f"PidFile {tmp_path}/apache2.pid", f"Listen {APACHE}:8081",
        *(f"LoadModule {name}_module {modules}/mod_{name}.so" for name in (
            "mpm_prefork", "authn_core", "authn_file", "authz_core", "authz_user",
            "auth_basic")),
        "ServerName apache.test", f"ErrorLog {tmp_path}/error.log", "LogLevel info",
        f"DocumentRoot {tmp_path}",
        f'<Directory "{tmp_path}/admin">', 'AuthType Basic', 'AuthName "device"',
        f"AuthUserFile {users}", "Require valid-user", "</Directory>", ""]))
    with start("apache2", ["apache2", "-X", "-f", str(conf)], tmp_path, APACHE,
               [(8081, "tcp")]) as daemon:
        tag, password = new_tag()
        answer = httpx.get(f"http://{APACHE}:8081/admin/", auth=(tag, password), timeout=10)
        assert answer.status_code == 401
        daemon.log = tmp_path / "error.log"
        line = logged(daemon, r"AH01618")
    assert re.search(rf"user {tag} not found", line)
    assert counts(line, tag)


def test_mosquitto_names_no_one_in_its_refusal(tmp_path: Path) -> None:
    with mosquitto_logging(tmp_path, MOSQUITTO, 1883, {"owner": "own-Pq7-pw"}) as daemon:
        tag, password = new_tag()
        done = subprocess.run(["mosquitto_pub", "-h", MOSQUITTO, "-p", "1883", "-i", tag,
                               "-u", tag, "-P", password, "-t", "t", "-m", "x"],
                              capture_output=True, timeout=30)
        assert done.returncode != 0
    refusal = logged(daemon, r"disconnected, not authorised")  # stdout is flushed at exit
    connection = logged(daemon, r"New connection from")
    assert tag not in refusal
    assert not counts(refusal, tag)
    source = connection.split("New connection from ")[1].split(" ")[0]
    assert not counts(connection, tag, source)  # names the source, says nothing failed


# ---------------------------------------------------------------------------------------------
# lighttpd and nginx, end to end: the probe's canary and its UDP sink
# ---------------------------------------------------------------------------------------------


def sink(port: int) -> dict[str, dict[str, object]]:
    """The probe's UDP sink; logger and nginx send from 127.0.0.1 on loopback, declared as the
    forwarder it stands for."""
    return {"syslog": {"listen": f"udp://{SINK}:{port}", "forwarders": ["127.0.0.1"]}}


def site(tmp: Path) -> Path:
    (tmp / "www" / "admin").mkdir(parents=True)
    (tmp / "www" / "admin" / "index.html").write_text("settings\n")
    return tmp / "www"


async def test_lighttpd_password_does_not_match_passes_end_to_end(tmp_path: Path) -> None:
    root = site(tmp_path)
    users = tmp_path / "users"
    users.write_text("admin:web-Kq2-secret\n")
    conf = tmp_path / "lighttpd.conf"
    conf.write_text("\n".join([
        'server.modules = ("mod_auth", "mod_authn_file")', f'server.document-root = "{root}"',
        f'server.bind = "{LIGHTTPD}"', "server.port = 8082",
        f'server.pid-file = "{tmp_path}/lighttpd.pid"',
        f'server.errorlog = "|/usr/bin/logger -d -n {SINK} -P 15710 --rfc3164 -t lighttpd"',
        'auth.backend = "plain"', f'auth.backend.plain.userfile = "{users}"',
        'auth.require = ("/admin" => ("method" => "basic", "realm" => "device", '
        '"require" => "valid-user"))', ""]))
    with start("lighttpd", ["lighttpd", "-D", "-f", str(conf)], tmp_path, LIGHTTPD,
               [(8082, "tcp")]), \
            monitored_context(LIGHTTPD, (8082,), sink(15710)) as ctx:
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=EVENTS)
        (transport,) = await run_check(TRANSPORT, ctx.device, context=ctx, plan=EVENTS)
    assert event.status is Status.PASS, event.evidence
    text = event.evidence["events"][0]["text"]
    assert "password doesn't match" in text and event.evidence["nonce"] in text
    assert transport.status is Status.FAIL


async def test_nginx_user_was_not_found_passes_end_to_end(tmp_path: Path) -> None:
    root = site(tmp_path)
    users = tmp_path / "htpasswd"
    users.write_text("admin:{PLAIN}web-Kq2-secret\n")
    http = (f"server {{ listen {NGINX}:8083; "
            f"error_log syslog:server={SINK}:15711,tag=nginx info;\n"
            f'  location /admin {{ root {root}; auth_basic "device"; '
            f"auth_basic_user_file {users}; }}\n}}")
    with nginx_site(tmp_path, NGINX, [8083], http), \
            monitored_context(NGINX, (8083,), sink(15711)) as ctx:
        assert bound(NGINX, 8083, "tcp")
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=EVENTS)
    assert event.status is Status.PASS, event.evidence
    text = event.evidence["events"][0]["text"]
    assert "was not found in" in text and event.evidence["nonce"] in text
    assert event.evidence["events"][0]["app_name"] == "nginx"
