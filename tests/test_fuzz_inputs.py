"""Bad input through the command line: every malformed inventory, profile and waiver exits 2
with a message naming the file, the line and the field, and never a traceback.

Hypothesis mutates one field of a valid document at a time (a bad value of the kinds users
write: out-of-range ports, words where numbers go, lists where names go, unset variables,
literal secrets, unknown keys, impossible dates) and runs `iotprobe` in-process (click's
CliRunner): `sweep -i` with an interval that is refused after the inventory is loaded, so that
nothing is ever scanned or resolved whatever the mutation, and `profiles show` for profiles
and their waivers. The tests beside the
parsers (test_inventory.py, test_profiles.py) feed arbitrary documents to the load functions;
these hold the whole path to the exit code and the message.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.checks.catalogue import catalogue
from probe.cli import cli
from probe.profile_loader import builtin_profile_ids

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
ENV = {"COLUMNS": "4000", "FUZZ_PW": "fuzz-password"}

INVENTORY = """\
defaults:
  exclude_ports: [2024]
  credentials:
    mqtt: {username: probe, password_env: FUZZ_PW}
devices:
  - id: sensor-1
    address: 127.99.0.1
    class: sensor
    services: {mqtt: [1883], coaps: [5684]}
    ports: [22, 80]
  - cidr: 127.99.1.0/30
    class: camera
"""

PROFILE = """\
id: fuzz-profile
title: Fuzzed profile
version: "1"
extends: iso27400-6.2
intrusive: false
scan:
  tcp_ports: "22,80,443,1883,8883"
controls:
  27400-6.2:
    checks:
      net.open-ports:
        severity: high
        params:
          allowed_tcp: [443, 8883]
        classes:
          camera: {allowed_tcp: [443, 554]}
      mqtt.client-certificate:
        severity: medium
waivers:
  - check: net.open-ports
    class: camera
    justification: legacy firmware until the next release
    expires: 2027-06-30
"""


@dataclass(frozen=True)
class Mutation:
    """Line `line` (1-based) becomes `text`; the error must name `field`."""

    line: int
    text: str
    field: str


def flow(value: Any) -> str:
    """`value` as a YAML flow scalar or collection (JSON is YAML)."""
    return json.dumps(value)


def with_line(document: str, mutation: Mutation) -> str:
    lines = document.splitlines()
    indent = re.match(r"\s*(- )?", lines[mutation.line - 1])
    lead = indent.group(0) if indent else ""
    lines[mutation.line - 1] = lead + mutation.text
    return "\n".join(lines) + "\n"


LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
BAD_PORT = st.one_of(st.integers(max_value=0), st.integers(min_value=65536, max_value=10**9),
                     LETTERS)
GOOD_PORT = st.integers(1, 65535).filter(lambda p: p != 2024)
BAD_PORTS = st.tuples(st.lists(GOOD_PORT, max_size=3), BAD_PORT, st.lists(GOOD_PORT, max_size=3)
                      ).map(lambda parts: [*parts[0], parts[1], *parts[2]])
NOT_A_NAME = st.one_of(st.integers(), st.lists(LETTERS, min_size=1, max_size=3),
                       st.dictionaries(LETTERS, LETTERS, min_size=1, max_size=2))
FIELD_NAME = st.from_regex(r"[a-z][a-z_]{2,11}", fullmatch=True)
DEVICE_KEYS = {"id", "address", "cidr", "hostname", "class", "site", "services", "credentials",
               "monitor", "trust_anchor", "ports", "exclude_ports"}
WAIVER_KEYS = {"check", "device", "class", "justification", "expires"}
YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


def _key(name: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return value.map(lambda v: f"{name}: {flow(v)}")


INVENTORY_MUTATIONS = st.one_of(
    _key("exclude_ports", BAD_PORTS).map(lambda t: Mutation(2, t, "exclude_ports")),
    _key("ports", BAD_PORTS).map(lambda t: Mutation(10, t, "ports")),
    BAD_PORTS.map(lambda v: Mutation(9, f"services: {{mqtt: {flow(v)}}}", "services")),
    _key("address", NOT_A_NAME).map(lambda t: Mutation(7, t, "address")),
    _key("address", st.text(alphabet=" !$%&*+,;<=>?@^`|~", min_size=1, max_size=4)
         .flatmap(lambda bad: LETTERS.map(lambda word: word + bad + word)))
    .map(lambda t: Mutation(7, t, "address")),
    _key("class", NOT_A_NAME).map(lambda t: Mutation(8, t, "class")),
    _key("id", NOT_A_NAME).map(lambda t: Mutation(6, t, "id")),
    st.one_of(st.integers(33, 999).map(lambda n: f"127.99.1.0/{n}"),
              LETTERS.map(lambda w: f"{w}/24")).map(
        lambda v: Mutation(11, f"cidr: {flow(v)}", "cidr")),
    LETTERS.map(lambda secret: Mutation(
        4, f"mqtt: {{username: probe, password: {flow(secret)}}}", "password")),
    st.from_regex(r"IOTPROBE_FUZZ_UNSET_[A-Z]{1,8}", fullmatch=True).map(lambda name: Mutation(
        4, f"mqtt: {{username: probe, password_env: {name}}}", "password_env")),
    st.from_regex(r"[0-9][A-Za-z0-9]{0,6}", fullmatch=True).map(lambda name: Mutation(
        4, f"mqtt: {{username: probe, password_env: {flow(name)}}}", "password_env")),
    FIELD_NAME.filter(lambda k: k not in DEVICE_KEYS).map(
        lambda k: Mutation(8, f"{k}: sensor", k)),
)

CHECK_IDS = set(catalogue())
BUILTIN = set(builtin_profile_ids())
PROFILE_MUTATIONS = st.one_of(
    st.from_regex(r"[a-z]{3,12}", fullmatch=True).filter(lambda n: n not in BUILTIN).map(
        lambda n: Mutation(4, f"extends: {n}", "extends")),
    st.one_of(LETTERS.filter(lambda w: w.lower() not in YAML_WORDS), st.integers()).map(
        lambda v: Mutation(5, f"intrusive: {flow(v)}", "intrusive")),
    LETTERS.map(lambda w: Mutation(7, f"tcp_ports: {flow('22,' + w)}", "tcp_ports")),
    LETTERS.filter(lambda w: w not in {"critical", "high", "medium", "low"}).map(
        lambda w: Mutation(12, f"severity: {flow(w)}", "severity")),
    _key("allowed_tcp", BAD_PORTS).map(lambda t: Mutation(14, t, "allowed_tcp")),
    _key("allowed_tcp", st.one_of(LETTERS, st.integers())).map(
        lambda t: Mutation(14, t, "allowed_tcp")),
    st.from_regex(r"[a-z]{2,8}\.[a-z]{2,12}", fullmatch=True).filter(
        lambda c: c not in CHECK_IDS).map(lambda c: Mutation(17, f"{c}:", c)),
    st.from_regex(r"[a-z]{2,8}\.[a-z]{2,12}", fullmatch=True).filter(
        lambda c: c not in CHECK_IDS).map(lambda c: Mutation(20, f"check: {c}", "check")),
    _key("class", NOT_A_NAME).map(lambda t: Mutation(21, t, "class")),
    st.one_of(st.just(""), NOT_A_NAME).map(
        lambda v: Mutation(22, f"justification: {flow(v)}", "justification")),
    LETTERS.map(lambda w: Mutation(23, f"expires: {flow(w)}", "expires")),
    st.tuples(st.integers(2000, 2999), st.integers(13, 99), st.integers(1, 28)).map(
        lambda d: Mutation(23, f"expires: {d[0]}-{d[1]:02d}-{d[2]:02d}", "expires")),
    st.tuples(st.integers(2000, 2999), st.integers(1, 12), st.integers(32, 99)).map(
        lambda d: Mutation(23, f"expires: {d[0]}-{d[1]:02d}-{d[2]:02d}", "expires")),
    FIELD_NAME.filter(lambda k: k not in WAIVER_KEYS).map(
        lambda k: Mutation(21, f"{k}: camera", k)),
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV)


def squeezed(text: str) -> str:
    """`text` without whitespace: the terminal may wrap a long path anywhere."""
    return re.sub(r"\s+", "", text)


def assert_located(result: Result, path: Path, line: int | None, field: str | None) -> None:
    """Exit 2, a message naming the file (and line and field when given), no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exc_info
    message = squeezed(result.stderr)
    assert "Traceback" not in result.output + result.stderr
    where = f"{path}:{line}:" if line is not None else f"{path}"
    assert squeezed(where) in message, (where, result.stderr)
    if field is not None:
        assert squeezed(field) in message.split(squeezed(where), 1)[1], (field, result.stderr)


def scan_inventory(path: Path, outdir: Path) -> Result:
    return invoke("scan", "-i", str(path), "-o", str(outdir), "--no-udp", "--ports", "9",
                  "--timeout", "0.1", "--budget", "1", "-q")


def load_inventory_only(path: Path) -> Result:
    """`sweep -i PATH --every 0s`: the inventory is loaded first, and a valid one meets the
    bad interval (exit 2 naming --every), so nothing is ever scanned or resolved."""
    return invoke("sweep", "-i", str(path), "--store", str(path.with_suffix(".sqlite")),
                  "--every", "0s")


def test_the_base_documents_are_valid(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(INVENTORY)
    assert scan_inventory(inventory, tmp_path / "out").exit_code == 3  # nothing listens
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE)
    shown = invoke("profiles", "show", str(profile))
    assert shown.exit_code == 0, shown.output


@SETTINGS
@given(mutation=INVENTORY_MUTATIONS)
def test_a_malformed_inventory_field_is_located(tmp_path: Path, mutation: Mutation) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(with_line(INVENTORY, mutation))
    assert_located(load_inventory_only(path), path, mutation.line, mutation.field)


@SETTINGS
@given(mutation=PROFILE_MUTATIONS)
def test_a_malformed_profile_or_waiver_field_is_located(tmp_path: Path,
                                                        mutation: Mutation) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(with_line(PROFILE, mutation))
    assert_located(invoke("profiles", "show", str(path)), path, mutation.line, mutation.field)


@SETTINGS
@given(line=st.integers(1, 12), junk=st.text(min_size=1, max_size=40))
def test_a_damaged_inventory_line_never_gives_a_traceback(tmp_path: Path, line: int,
                                                          junk: str) -> None:
    """Any line replaced by anything: a valid inventory or exit 2 naming the file."""
    path = tmp_path / "inventory.yaml"
    lines = INVENTORY.splitlines()
    lines[line - 1] = junk
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    result = load_inventory_only(path)
    if "--every" in result.stderr:
        assert result.exit_code == 2
        return
    assert_located(result, path, None, None)


@SETTINGS
@given(line=st.integers(1, 23), junk=st.text(min_size=1, max_size=40))
def test_a_damaged_profile_line_never_gives_a_traceback(tmp_path: Path, line: int,
                                                        junk: str) -> None:
    path = tmp_path / "profile.yaml"
    lines = PROFILE.splitlines()
    lines[line - 1] = junk
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    result = invoke("profiles", "show", str(path))
    if result.exit_code == 0:
        return
    assert_located(result, path, None, None)
