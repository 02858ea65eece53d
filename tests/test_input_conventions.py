"""The input side of the command line's conventions (issue 18): `sweep --count` alone, check
selection, target lists and nmap XML, the trust failure in words, waiver warnings.

Real peers on 127.165.0.0/16: nginx serving HTTPS with a certificate of a private CA, and
mosquitto accepting anonymous MQTT in clear text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records
from daemons import Certificate, issue, make_ca, mosquitto, nginx

from probe.record.files import read_record, record_text
from probe.record.schema import validate_record

WEB = "127.165.0.1"
BROKER = "127.165.0.2"
SELF_SIGNED = "127.165.0.3"
FAST = ("--timeout", "2", "--budget", "60", "--exclude-ports", "2024", "--no-udp",
        "--ports", "443,1883", "-p", "iso27400-6.2")


def iotprobe(*args: str, stdin: str | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=300, input=stdin, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"},
                          stdin=None if stdin is not None else subprocess.DEVNULL)


@dataclass(frozen=True)
class Peers:
    ca: Certificate


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    tmp = tmp_path_factory.mktemp("peers")
    ca, issuer = make_ca(tmp)
    cert, _ = issue(tmp, "web", issuer, names=[WEB])
    own, _ = issue(tmp, "own", None, names=[SELF_SIGNED])
    with nginx(tmp, WEB, 443, cert), mosquitto(tmp, BROKER, 1883), \
            nginx(tmp, SELF_SIGNED, 443, own):
        yield Peers(ca)


def records(outdir: Path) -> dict[str, dict[str, Any]]:
    """The records of a scan, each validated against the schema."""
    found = load_records(outdir)
    for record in found.values():
        validate_record(record)
    return found


def rows(record: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [r for r in record["results"] if r["check"] == check]


# --------------------------------------------------------------------------------------------
# 1. sweep --count N without --every
# --------------------------------------------------------------------------------------------


def test_count_without_every_runs_that_many_sweeps_back_to_back(peers: Peers,
                                                                 tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"devices:\n  - address: {BROKER}\n")
    store = tmp_path / "fleet.sqlite"
    run = iotprobe("sweep", "-i", str(inventory), "--store", str(store), "--count", "2",
                   *FAST, "-q")
    assert run.returncode == 1, run.stderr
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        sweeps = list(conn.execute("SELECT id, state FROM sweeps ORDER BY id"))
    finally:
        conn.close()
    assert sweeps == [(1, "finished"), (2, "finished")]
    assert "next sweep at" not in run.stderr


# --------------------------------------------------------------------------------------------
# 5. tls.certificate-trust in words
# --------------------------------------------------------------------------------------------


def test_trust_failure_says_what_was_checked_and_what_to_do(peers: Peers,
                                                            tmp_path: Path) -> None:
    plain = iotprobe("scan", WEB, "-o", str(tmp_path / "plain"), *FAST, "-q")
    assert plain.returncode == 1, plain.stderr
    (trust,) = rows(records(tmp_path / "plain")[WEB], "tls.certificate-trust")
    assert trust["status"] == "fail"
    assert trust["summary"] == (
        "tcp/443: the chain of the certificate CN=web does not lead to a trusted root; "
        "trust anchors: the system store; pass --trust-anchor for a fleet CA")
    (served,) = trust["evidence"]["certificates"]
    assert served["validation_error"].startswith("validation failed")
    anchored = iotprobe("scan", WEB, "-o", str(tmp_path / "anchored"), *FAST, "-q",
                        "--trust-anchor", str(peers.ca.cert))
    (trust,) = rows(records(tmp_path / "anchored")[WEB], "tls.certificate-trust")
    assert trust["status"] == "pass", anchored.stderr
    own = iotprobe("scan", SELF_SIGNED, "-o", str(tmp_path / "own"), *FAST, "-q",
                   "--trust-anchor", str(peers.ca.cert))
    (trust,) = rows(records(tmp_path / "own")[SELF_SIGNED], "tls.certificate-trust")
    assert trust["summary"] == (
        "tcp/443: the self-signed certificate CN=own is not one of the trust anchors; "
        f"trust anchors: --trust-anchor {peers.ca.cert}"), own.stderr


# --------------------------------------------------------------------------------------------
# 2. Check selection
# --------------------------------------------------------------------------------------------


def test_checks_and_skip_checks_narrow_the_scan_and_the_record_says_why(
        peers: Peers, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = iotprobe("scan", WEB, BROKER, "-o", str(out), *FAST, "-q", "--processes", "2",
                   "--checks", "tls.*", "--checks", "mqtt.anonymous-access,net.open-ports",
                   "--skip-checks", "tls.known-vulnerabilities,tls.cipher-suites")
    assert run.returncode == 1, run.stderr
    found = records(out)
    wanted = {"tls.protocol-versions", "tls.certificate-validity", "tls.certificate-trust",
              "tls.certificate-strength", "mqtt.anonymous-access", "net.open-ports"}
    for record in found.values():
        assert {r["check"] for r in record["results"]} == wanted
        selection = record["selection"]
        assert selection["checks"] == ["tls.*", "mqtt.anonymous-access", "net.open-ports"]
        assert selection["skip_checks"] == ["tls.known-vulnerabilities", "tls.cipher-suites"]
        reasons = {row["check"]: row["reason"] for row in selection["deselected"]}
        assert reasons["tls.cipher-suites"] == "left out by --skip-checks tls.cipher-suites"
        assert reasons["mqtt.cleartext-listener"].startswith("not selected by --checks tls.*")
        assert wanted.isdisjoint(reasons)
    (anonymous,) = rows(found[BROKER], "mqtt.anonymous-access")
    assert anonymous["status"] == "fail"
    for path in out.glob("*.record.json"):  # the selection reads back as it was written
        assert record_text(read_record(path).to_json()) == path.read_text(encoding="utf-8")


def test_severity_and_control_select_from_the_profile(peers: Peers, tmp_path: Path) -> None:
    critical = iotprobe("scan", BROKER, "-o", str(tmp_path / "critical"), *FAST, "-q",
                        "--severity", "critical")
    assert critical.returncode == 1, critical.stderr
    record = records(tmp_path / "critical")[BROKER]
    assert {r["severity"] for r in record["results"]} == {"critical"}
    assert any(r["check"] == "mqtt.anonymous-access" and r["status"] == "fail"
               for r in record["results"])
    reasons = {row["check"]: row["reason"] for row in record["selection"]["deselected"]}
    assert reasons["mqtt.cleartext-listener"] == "its severity high is below --severity critical"
    monitoring = iotprobe("scan", BROKER, "-o", str(tmp_path / "monitoring"),
                          *FAST[:-2], "-p", "iso27400", "--control", "27400-6.5")
    record = records(tmp_path / "monitoring")[BROKER]
    assert {r["control"] for r in record["results"]} == {"27400-6.5"}, monitoring.stderr
    ran = len({r["check"] for r in record["results"]})
    total = ran + len(record["selection"]["deselected"])
    assert f"note: {ran} of the {total} checks of profile iso27400 run (--control " \
           "27400-6.5); each record names the others under selection.deselected" \
        in monitoring.stderr
    assert record["selection"]["controls"] == ["27400-6.5"]


def test_no_selection_no_selection_block(peers: Peers, tmp_path: Path) -> None:
    run = iotprobe("scan", BROKER, "-o", str(tmp_path / "all"), *FAST, "-q")
    assert run.returncode == 1, run.stderr
    assert "selection" not in records(tmp_path / "all")[BROKER]


@pytest.mark.parametrize(("args", "said"), [
    (("--checks", "tls.certficate-trust"),
     "--checks: 'tls.certficate-trust' matches no check (did you mean "
     "'tls.certificate-trust'?)"),
    (("--skip-checks", "coap.*", "-p", "iso27400-6.5"),
     "--skip-checks: 'coap.*' matches no check of profile iso27400-6.5"),
    (("--checks", "TLS.*"), "--checks: 'TLS.*' is not a check id or glob"),
    (("--checks", "tls.*,tsl.*"), "--checks: 'tsl.*' matches no check (did you mean 'tls.*'?)"),
    (("--control", "27400-6.9"), "--control: '27400-6.9' is not a control of profile "
                                 "iso27400"),
    (("--checks", "tls.*", "--skip-checks", "tls.*"),
     "--checks: the selection leaves no check of profile iso27400 to run"),
])
def test_a_selection_matching_nothing_is_exit_2_before_any_packet(
        tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    out = tmp_path / "out"
    run = iotprobe("scan", "127.165.0.200", "-o", str(out), *FAST[:-2], *args)
    assert run.returncode == 2 and said in run.stderr, run.stderr
    assert not out.exists()


def test_a_sweep_stores_the_selection_and_refuses_it_distributed(peers: Peers,
                                                                 tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"devices:\n  - address: {BROKER}\n")
    store = tmp_path / "fleet.sqlite"
    run = iotprobe("sweep", "-i", str(inventory), "--store", str(store), *FAST, "-q",
                   "--checks", "mqtt.*")
    assert run.returncode == 1, run.stderr
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        (stored,) = [json.loads(row[0]) for row in conn.execute("SELECT record FROM records")]
    finally:
        conn.close()
    validate_record(stored)
    assert stored["selection"]["checks"] == ["mqtt.*"]
    assert {r["check"].split(".")[0] for r in stored["results"]} == {"mqtt"}
    distributed = iotprobe("sweep", "-i", str(inventory), "--store", str(store), *FAST,
                           "--distributed", "--broker", "redis://127.165.0.250:6379/0",
                           "--checks", "mqtt.*")
    assert distributed.returncode == 2
    assert "--distributed: the workers of a distributed sweep run the whole profile" \
        in distributed.stderr


# --------------------------------------------------------------------------------------------
# 3. Target lists and nmap XML
# --------------------------------------------------------------------------------------------


def test_a_target_list_with_comments_and_a_range(peers: Peers, tmp_path: Path) -> None:
    listed = tmp_path / "targets.txt"
    listed.write_text(f"# the lab's peers\n\n{WEB[:-1]}1-2   # web and broker\n")
    run = iotprobe("scan", "-iL", str(listed), "-o", str(tmp_path / "out"), *FAST, "-q")
    assert run.returncode == 1, run.stderr
    found = records(tmp_path / "out")
    assert set(found) == {WEB, BROKER}
    (anonymous,) = rows(found[BROKER], "mqtt.anonymous-access")
    assert anonymous["status"] == "fail"


def test_a_target_list_on_stdin(peers: Peers, tmp_path: Path) -> None:
    run = iotprobe("scan", "-iL", "-", "-o", str(tmp_path / "out"), *FAST, "-q",
                   stdin=f"{BROKER}\n")
    assert run.returncode == 1, run.stderr
    assert set(records(tmp_path / "out")) == {BROKER}


@pytest.mark.parametrize(("text", "said"), [
    ("127.165.0.1\n\nbroker.plant.example\n",
     ":3: 'broker.plant.example' is a host name: a target list takes IP addresses"),
    ("127.165.0.9-3\n", ":1: '127.165.0.9-3': the range must go up"),
    ("127.165.0-3.1\n", ":1: '127.165.0-3.1' is not a range"),
    ("# nothing\n", "no targets"),
    ("127.165.4.0/30\n127.165.4.1\n", "127.165.4.1 is already in the block 127.165.4.0/30"),
    ("127.165.4.0\n127.165.5.0/24 127.165.4.0/31\n",
     "the block 127.165.4.0/31 contains 127.165.4.0, the id of the device at"),
    ("127.165.4.0-127.165.6.255\n127.165.5.0/24\n",
     "the block 127.165.5.0/24 contains 127.165.5.1"),
    ("127.165.0.0-127.165.255.255\n" * 5,
     ":5: more than 262144 addresses listed one by one or in ranges"),
])
def test_a_bad_target_list_is_exit_2_naming_file_and_line(tmp_path: Path, text: str,
                                                          said: str) -> None:
    listed = tmp_path / "targets.txt"
    listed.write_text(text)
    out = tmp_path / "out"
    run = iotprobe("scan", "-iL", str(listed), "-o", str(out), *FAST)
    assert run.returncode == 2, run.stderr
    assert f"{listed}{said}" in run.stderr or (f"{listed}: " in run.stderr
                                                and said in run.stderr), run.stderr
    assert not out.exists()


def nmap_xml(tmp_path: Path) -> Path:
    """A real `nmap -oX` document of a connect scan of the two peers (port 2024 excluded)."""
    xml = tmp_path / "nmap.xml"
    nmap = subprocess.run(
        ["nmap", "-n", "-Pn", "-sT", "-p", "443,1883,8883", "--exclude-ports", "2024",
         "-oX", str(xml), f"{WEB}-2"], capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert nmap.returncode == 0, nmap.stderr
    return xml


def test_nmap_xml_hosts_become_devices_with_their_services(peers: Peers,
                                                           tmp_path: Path) -> None:
    from probe.inventory import load_inventory

    xml = nmap_xml(tmp_path)
    devices = {d.id: d.services for d in load_inventory(xml).devices()}
    assert devices == {WEB: {"https": (443,)}, BROKER: {"mqtt": (1883,)}}
    run = iotprobe("scan", "-i", str(xml), "-o", str(tmp_path / "out"), *FAST, "-q")
    assert run.returncode == 1, run.stderr
    found = records(tmp_path / "out")
    assert set(found) == {WEB, BROKER}
    assert {r["check"] for r in found[WEB]["results"] if r["status"] == "pass"} >= {
        "tls.protocol-versions", "tls.certificate-validity"}
    store = tmp_path / "nmap.sqlite"
    sweep = iotprobe("sweep", "-i", str(xml), "--store", str(store), *FAST, "-q")
    assert sweep.returncode == 1, sweep.stderr


LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
]>
<nmaprun><host><status state="up"/><address addr="127.165.0.2" addrtype="ipv4"/>
<hostnames><hostname name="&e;"/></hostnames></host></nmaprun>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY leak SYSTEM "file:///etc/hostname">]>
<nmaprun><host><status state="up"/><address addr="127.165.0.2" addrtype="ipv4"/>
<hostnames><hostname name="&leak;"/></hostnames></host></nmaprun>
"""


@pytest.mark.parametrize(("text", "said"), [
    (LAUGHS, "refused: the document declares an XML entity"),
    (EXTERNAL, "refused: the document declares an XML entity"),
    ("<nmaprun><host>", "not well-formed XML"),
    ("<html/>", "not nmap XML output (-oX)"),
    ('<nmaprun><host><status state="up"/><address addr="127.165.0.2" addrtype="ipv4"/>'
     '<ports><port protocol="tcp" portid="99999"><state state="open"/>'
     '<service name="http"/></port></ports></host></nmaprun>', "'99999' is not a port number"),
])
def test_hostile_or_broken_nmap_xml_is_exit_2(tmp_path: Path, text: str, said: str) -> None:
    xml = tmp_path / "scan.xml"
    xml.write_text(text)
    out = tmp_path / "out"
    run = iotprobe("scan", "-i", str(xml), "-o", str(out), *FAST)
    assert run.returncode == 2 and said in run.stderr, run.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 6. Waivers that would fail silently
# --------------------------------------------------------------------------------------------


def waiver_profile(tmp_path: Path) -> Path:
    profile = tmp_path / "waived.yaml"
    profile.write_text(f"""id: waived
extends: iso27400-6.2
waivers:
  - check: mqtt.anonymous-access
    fleet: true
    justification: the whole fleet moves to client certificates in Q3
    expires: 2099-12-31
  - check: mqtt.cleartext-listener
    device: {BROKER}
    justification: TLS listener comes with firmware 2
    expires: 2020-01-31
  - check: net.open-ports
    class: camera
    justification: RTSP stays
    expires: 2099-12-31
  - check: tls.cipher-suites
    device: 127.165.9.9
    justification: decommissioned soon
    expires: 2099-12-31
""")
    return profile


def test_waivers_warn_when_expired_classless_or_matching_nothing(peers: Peers,
                                                                 tmp_path: Path) -> None:
    profile = waiver_profile(tmp_path)
    run = iotprobe("scan", BROKER, "-o", str(tmp_path / "out"), *FAST[:-2], "-p",
                   str(profile), "-q")
    assert run.returncode == 1, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: the waiver of mqtt.cleartext-listener for device {BROKER} expired on "
        "2020-01-31: its failures count again (renew it with a new date, or remove it)",
        "warning: the waiver of net.open-ports for class camera cannot cover command-line "
        "targets, target lists or nmap XML: their devices have no class (give them `class: "
        "camera` in an inventory)",
        "warning: the waiver of net.open-ports for class camera matches no device of this scan",
        "warning: the waiver of tls.cipher-suites for device 127.165.9.9 matches no device of "
        "this scan",
    ]
    record = records(tmp_path / "out")[BROKER]
    (anonymous,) = rows(record, "mqtt.anonymous-access")
    assert anonymous["status"] == "fail"
    assert anonymous["waived"] == {"justification": "the whole fleet moves to client "
                                   "certificates in Q3", "expires": "2099-12-31"}
    (cleartext,) = rows(record, "mqtt.cleartext-listener")
    assert cleartext["status"] == "fail" and "waived" not in cleartext


def test_a_sweep_warns_too_and_selection_explains_its_waivers(peers: Peers,
                                                              tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"devices:\n  - address: {BROKER}\n    class: camera\n")
    run = iotprobe("sweep", "-i", str(inventory), "--store", str(tmp_path / "s.sqlite"),
                   *FAST[:-2], "-p", str(waiver_profile(tmp_path)), "-q",
                   "--skip-checks", "tls.*")
    assert run.returncode == 1, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: the waiver of mqtt.cleartext-listener for device {BROKER} expired on "
        "2020-01-31: its failures count again (renew it with a new date, or remove it)",
        "warning: the waiver of tls.cipher-suites for device 127.165.9.9 waives a check this "
        "scan does not run (left out by --skip-checks tls.*)",
    ]


def test_profiles_show_marks_expired_waivers_and_the_fleet_scope(tmp_path: Path) -> None:
    shown = iotprobe("profiles", "show", str(waiver_profile(tmp_path)))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    expired = next(line for line in lines if "mqtt.cleartext-listener" in line
                   and "2020-01-31" in line)
    assert "2020-01-31 (expired)" in expired
    fleet = next(line for line in lines if "mqtt.anonymous-access" in line
                 and "2099-12-31" in line)
    assert "the whole fleet" in fleet and "expired" not in fleet


def test_resume_keeps_the_check_selection_of_the_stored_records(peers: Peers,
                                                                 tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"devices:\n  - address: {BROKER}\n  - address: {WEB}\n")
    store = tmp_path / "fleet.sqlite"
    args = ("sweep", "-i", str(inventory), "--store", str(store), *FAST, "-q")
    first = iotprobe(*args, "--checks", "mqtt.*")
    assert first.returncode == 1, first.stderr
    conn = sqlite3.connect(store)
    try:  # as a sweep stopped after its first device leaves it
        with conn:
            conn.execute("DELETE FROM results WHERE record_id IN (SELECT id FROM records "
                         "WHERE device_id = ?)", (WEB,))
            conn.execute("DELETE FROM records WHERE device_id = ?", (WEB,))
            conn.execute("UPDATE sweeps SET state = 'interrupted', finished_at = NULL")
    finally:
        conn.close()
    other = iotprobe(*args, "--resume")
    assert other.returncode == 2
    assert "--resume: sweep #1 ran with --checks mqtt.*, not no selection" in other.stderr
    same = iotprobe(*args, "--resume", "--checks", "mqtt.*")
    assert same.returncode == 1, same.stderr
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        stored = {row[0]: json.loads(row[1]) for row in
                  conn.execute("SELECT device_id, record FROM records")}
        assert list(conn.execute("SELECT id, state FROM sweeps")) == [(1, "finished")]
    finally:
        conn.close()
    assert set(stored) == {BROKER, WEB}
    for record in stored.values():
        validate_record(record)
    assert stored[WEB]["selection"]["checks"] == ["mqtt.*"]
