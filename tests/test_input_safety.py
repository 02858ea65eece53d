"""Inputs are checked before the first packet: device ids, output paths, numbers, stores.

Each refused input is given to the real CLI (`python -m probe` in a subprocess) with a silent
TCP listener at the device's address: the test asserts exit code 2, a message that locates
the problem, and that the listener never saw a connection and nothing was written. Addresses
are 127.138.x.y only.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import load_records
from daemons import Listener, silent
from pgserver import PASSWORD, USER, PostgresServer, postgres_server

from probe.context import ScanOptions
from probe.ids import MAX_ID_LENGTH, MAX_STEM_BYTES, file_stem, id_problem
from probe.inventory import inventory_from_targets, load_inventory
from probe.record.files import record_filename
from probe.store import mask

PORT = 8081
QUICK = ("--no-udp", "--ports", str(PORT), "--exclude-ports", "2024", "--timeout", "0.5",
         "--budget", "10", "-q")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """stderr with the terminal's line wrapping undone."""
        return " ".join(self.stderr.split())


async def iotprobe(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """The real CLI in a subprocess, while the test's listeners keep serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})})
    try:
        async with asyncio.timeout(300):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in err.decode(), err.decode()
    return Run(process.returncode or 0, out.decode(), err.decode())


@pytest.fixture
async def device() -> AsyncIterator[Listener]:
    """A silent TCP service at 127.138.1.1:PORT: it counts every connection the probe makes."""
    async with Listener("127.138.1.1", PORT, silent) as listener:
        yield listener


def inventory(tmp: Path, text: str, name: str = "inv.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def refused(run: Run, *where: str) -> None:
    """Exit 2, and each of `where` in the message."""
    assert run.code == 2, (run.code, run.stdout, run.stderr)
    for text in where:
        assert text in run.said, (text, run.stderr)


# ---------------------------------------------------------------------------------------------
# Device ids: one record file each, bounded, printable
# ---------------------------------------------------------------------------------------------


def test_every_id_has_a_file_name_of_its_own() -> None:
    ids = ["cam:1", "cam_1", "cam%3A1", "fd00::1", "fd00__1", "fe80::1%eth0", ".hidden",
           "%2Ehidden", "a" * MAX_ID_LENGTH]
    names = [record_filename(device_id) for device_id in ids]
    assert len(set(names)) == len(ids)
    assert names[:2] == ["cam%3A1.record.json", "cam_1.record.json"]
    assert all("/" not in name and not name.startswith(".") and len(name.encode()) <= 255
               for name in names)


def test_the_longest_valid_id_fits_a_file_name() -> None:
    assert id_problem("a" * MAX_ID_LENGTH) is None
    assert id_problem("a" * (MAX_ID_LENGTH + 1)) is not None
    worst = "a" + ":" * ((MAX_STEM_BYTES - 1) // 3)
    assert id_problem(worst) is None and len(file_stem(worst)) <= MAX_STEM_BYTES
    assert id_problem(worst + ":") is not None
    assert len(f".{record_filename(worst)}.XXXXXXXX".encode()) <= 255
    assert id_problem("cam\u202e1") is not None and id_problem("cam 1") is not None


async def test_ids_that_shared_a_file_name_each_keep_their_record(tmp_path: Path,
                                                                 device: Listener) -> None:
    path = inventory(tmp_path, """
        devices:
          - {id: "cam:1", address: 127.138.1.1}
          - {id: cam_1, address: 127.138.1.2}
          - {id: "fd00::1", address: 127.138.1.3}
          - {id: fd00__1, address: 127.138.1.4}
        """)
    out = tmp_path / "out"
    run = await iotprobe("scan", "-i", str(path), "127.138.2.0/30", "-o", str(out),
                         "--format", "html", "--format", "junit", *QUICK)
    assert run.code in (1, 3), run.stderr
    records = load_records(out)
    ids = {"cam:1", "cam_1", "fd00::1", "fd00__1", "127.138.2.1", "127.138.2.2"}
    assert set(records) == ids
    assert records["cam:1"]["device"]["address"] == "127.138.1.1"
    assert records["cam_1"]["device"]["address"] == "127.138.1.2"
    junit = (out / "report.junit.xml").read_text()
    html = (out / "report.html").read_text()
    for device_id in ids:
        assert f'name="{device_id}"' in junit
        assert device_id in html
    assert device.accepted > 0


async def test_an_overlong_id_is_refused_before_any_packet(tmp_path: Path,
                                                           device: Listener) -> None:
    long_id = "cam-" + "x" * MAX_ID_LENGTH
    path = inventory(tmp_path, f"""
        devices:
          - {{id: ok, address: 127.138.1.1}}
          - {{id: {long_id}, address: 127.138.1.1}}
        """)
    out = tmp_path / "out"
    run = await iotprobe("scan", "-i", str(path), "-o", str(out), *QUICK)
    refused(run, f"{path}:3:", "devices[1].id", f"at most {MAX_ID_LENGTH} characters")
    assert device.accepted == 0 and not out.exists()


async def test_an_id_whose_file_name_is_too_long_is_refused(tmp_path: Path,
                                                            device: Listener) -> None:
    path = inventory(tmp_path, "id,address\n" + "a" + ":" * 100 + ",127.138.1.1\n",
                     "inv.csv")
    run = await iotprobe("scan", "-i", str(path), "-o", str(tmp_path / "out"), *QUICK)
    refused(run, f"{path}:2:", "id:", "record file name")
    assert device.accepted == 0


async def test_a_host_name_target_too_long_for_an_id_is_refused(tmp_path: Path,
                                                                device: Listener) -> None:
    name = ".".join(["a" * 60] * 3) + ".example"
    run = await iotprobe("scan", "127.138.1.1", name, "-o", str(tmp_path / "out"), *QUICK)
    refused(run, "TARGET", f"at most {MAX_ID_LENGTH} characters")
    assert device.accepted == 0


async def test_an_ipv6_zone_with_control_characters_is_refused(tmp_path: Path,
                                                               device: Listener) -> None:
    run = await iotprobe("scan", "127.138.1.1", "fe80::1%\x1b[2J", "-o",
                         str(tmp_path / "out"), *QUICK)
    refused(run, "TARGET", "zone")
    assert device.accepted == 0


async def test_the_longest_id_is_scanned_and_written(tmp_path: Path, device: Listener) -> None:
    longest = "c" * MAX_ID_LENGTH
    path = inventory(tmp_path, f"devices:\n  - {{id: {longest}, address: 127.138.1.1}}\n")
    out = tmp_path / "out"
    run = await iotprobe("scan", "-i", str(path), "-o", str(out), *QUICK)
    assert run.code in (1, 3), run.stderr
    assert set(load_records(out)) == {longest} and device.accepted > 0


# ---------------------------------------------------------------------------------------------
# Outputs: checked before the first packet
# ---------------------------------------------------------------------------------------------


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_an_outdir_below_a_regular_file_is_refused(tmp_path: Path,
                                                         device: Listener) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    run = await iotprobe("scan", "127.138.1.1", "-o", str(out), *QUICK)
    refused(run, "--output-dir", str(out), "Not a directory")
    assert device.accepted == 0 and entries(tmp_path) == ["file"]


async def test_an_outdir_in_proc_is_refused(device: Listener) -> None:
    run = await iotprobe("scan", "127.138.1.1", "-o", "/proc/self/iotprobe-out", *QUICK)
    refused(run, "--output-dir", "/proc/self/iotprobe-out")
    assert device.accepted == 0


@pytest.mark.parametrize("blocker", ["127.138.1.1.record.json", "report.html"])
async def test_a_directory_where_an_output_goes_is_refused(tmp_path: Path, device: Listener,
                                                           blocker: str) -> None:
    out = tmp_path / "out"
    (out / blocker).mkdir(parents=True)
    run = await iotprobe("scan", "127.138.1.1", "-o", str(out), "--format", "html", *QUICK)
    refused(run, "--output-dir", str(out / blocker), "it is a directory")
    assert device.accepted == 0 and entries(out) == [blocker]


async def test_a_fifo_where_a_record_of_a_block_goes_is_refused(tmp_path: Path,
                                                                  device: Listener) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "127.138.1.2.record.json")
    run = await iotprobe("scan", "127.138.1.0/30", "-o", str(out), *QUICK)
    refused(run, str(out / "127.138.1.2.record.json"), "device 127.138.1.2",
            "not a regular file")
    assert device.accepted == 0 and entries(out) == ["127.138.1.2.record.json"]


async def test_a_symbolic_link_where_a_record_goes_is_replaced(tmp_path: Path,
                                                               device: Listener) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "127.138.1.1.record.json").symlink_to(tmp_path / "elsewhere")
    run = await iotprobe("scan", "127.138.1.1", "-o", str(out), *QUICK)
    assert run.code in (1, 3), run.stderr
    assert set(load_records(out)) == {"127.138.1.1"} and device.accepted > 0
    assert entries(tmp_path / "elsewhere") == []


# ---------------------------------------------------------------------------------------------
# Numbers: finite and bounded
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [
    ("--rate", "nan"), ("--rate", "inf"), ("--budget", "nan"), ("--budget", "inf"),
    ("--budget", "-inf"), ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "1e400"),
])
async def test_a_non_finite_scan_number_is_refused(tmp_path: Path, device: Listener,
                                                   option: str, value: str) -> None:
    out = tmp_path / "out"
    run = await iotprobe("scan", "127.138.1.1", "-o", str(out),
                         *[a for a in QUICK if a not in ("--timeout", "0.5", "--budget", "10")],
                         option, value)
    refused(run, f"Invalid value for '{option}'")
    assert device.accepted == 0 and not out.exists()


@pytest.mark.parametrize("args", [
    ("worker", "--broker", "redis://127.138.9.1:9/0", "--store", "x.sqlite",
     "--visibility-timeout", "nan"),
    ("lab", "selftest", "--base", "127.138.3.1", "--timeout", "nan"),
    ("sweep", "-i", "inv.yaml", "--store", "s.sqlite", "--budget", "inf"),
])
async def test_a_non_finite_number_is_refused_by_every_command(tmp_path: Path,
                                                               args: tuple[str, ...]) -> None:
    inventory(tmp_path, "devices:\n  - {address: 127.138.1.1}\n")
    run = await iotprobe(*args, cwd=tmp_path, env={"IOTPROBE_STATE_DIR": str(tmp_path / "st")})
    refused(run, "Invalid value for", "finite" if "nan" in args else "range")
    assert entries(tmp_path) == ["inv.yaml"]


async def test_an_endless_interval_is_refused(tmp_path: Path) -> None:
    inventory(tmp_path, "devices:\n  - {address: 127.138.1.1}\n")
    run = await iotprobe("sweep", "-i", "inv.yaml", "--store", "s.sqlite", "--every",
                         "9" * 400 + "d", cwd=tmp_path)
    refused(run, "--every", "at most 366 days")
    assert entries(tmp_path) == ["inv.yaml"]


async def test_an_integer_beyond_64_bits_is_located(tmp_path: Path, device: Listener) -> None:
    path = inventory(tmp_path, f"""
        devices:
          - address: 127.138.1.1
            monitor:
              command:
                run: ["true"]
                timeout: {"9" * 400}
        """)
    run = await iotprobe("scan", "-i", str(path), "-o", str(tmp_path / "out"), *QUICK)
    refused(run, f"{path}:6:", "integers outside")
    profile = inventory(tmp_path, f"""
        id: mine
        title: mine
        version: "1"
        extends: iso27400-6.2
        controls: {{}}
        checks:
          tls.certificate-validity:
            params: {{min_days_remaining: {"9" * 400}}}
        """, "profile.yaml")
    run = await iotprobe("scan", "127.138.1.1", "-p", str(profile), "-o",
                         str(tmp_path / "out"), *QUICK)
    refused(run, f"{profile}:8:", "integers outside")
    assert device.accepted == 0 and not (tmp_path / "out").exists()


def test_scan_options_are_finite() -> None:
    for bad in ({"timeout": math.nan}, {"budget": math.inf}, {"rate": -math.inf},
                {"timeout": 0.0}):
        with pytest.raises(ValueError, match="finite number above zero"):
            ScanOptions(**bad)


# ---------------------------------------------------------------------------------------------
# Stores: read-only commands create nothing; credentials in a URL are masked
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def tables(pg: PostgresServer, database: str) -> list[str]:
    with psycopg.connect(host="127.0.0.1", port=pg.port, user=USER, password=PASSWORD,
                         dbname=database) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(row[0] for row in rows)


@pytest.mark.parametrize("args", [
    ("diff", "--store", "nope.sqlite"),
    ("diff", "--store", "sqlite:///sub/nope.sqlite"),
    ("diff", "-i", "inv.yaml"),
    ("report", "-i", "inv.yaml", "--format", "html", "-o", "r.html"),
    ("report", "--store", "nope.sqlite", "--format", "junit", "-o", "-"),
    ("sweep", "--status", "-i", "inv.yaml"),
    ("metrics", "--store", "nope.sqlite"),
    ("metrics", "-i", "inv.yaml", "-o", "m.prom"),
])
async def test_a_read_only_command_creates_no_store(tmp_path: Path,
                                                    args: tuple[str, ...]) -> None:
    inventory(tmp_path, "devices:\n  - {address: 127.138.1.1}\n")
    run = await iotprobe(*args, cwd=tmp_path)
    refused(run, "--store", "no store at")
    assert entries(tmp_path) == ["inv.yaml"]


async def test_report_below_a_regular_file_is_refused_before_rendering(
        tmp_path: Path, device: Listener) -> None:
    path = inventory(tmp_path, "devices:\n  - {address: 127.138.1.1}\n")
    swept = await iotprobe("sweep", "-i", str(path), *QUICK)
    assert swept.code in (1, 3), swept.stderr
    (tmp_path / "file").write_text("x")
    before = entries(tmp_path)
    run = await iotprobe("report", "-i", str(path), "--format", "html", "-o",
                         str(tmp_path / "file" / "report.html"))
    refused(run, "--output", "is not a directory")
    assert entries(tmp_path) == before and (tmp_path / "file").read_text() == "x"


async def test_credentials_in_a_postgresql_url_are_masked_everywhere(
        tmp_path: Path, device: Listener, pg: PostgresServer) -> None:
    database = pg.create_database()
    base = f"postgresql://{USER}@127.0.0.1:{pg.port}/{database}"
    store = f"{base}?password={PASSWORD}&sslmode=disable"
    read = await iotprobe("diff", "--store", store)
    refused(read, "holds no iotprobe store", "password=***")
    assert tables(pg, database) == []
    longest = "d" * MAX_ID_LENGTH
    path = inventory(tmp_path, f"devices:\n  - {{id: {longest}, address: 127.138.1.1}}\n")
    swept = await iotprobe("sweep", "-i", str(path), "--store", store,
                           *[a for a in QUICK if a != "-q"])
    assert swept.code in (1, 3), swept.stderr
    assert "password=***" in swept.stdout
    for query in (f"?password={PASSWORD}&passwd={PASSWORD}x", f"?sslpassword={PASSWORD}"):
        wrong = await iotprobe("diff", "--store", f"{base}{query}")
        assert wrong.code == 2 and "***" in wrong.stderr
        assert PASSWORD not in wrong.stdout + wrong.stderr
    resumed = await iotprobe("sweep", "-i", str(path), "--store", store, "--resume", *QUICK)
    assert resumed.code in (1, 3), resumed.stderr
    report = await iotprobe("report", "--store", store, "--format", "junit", "-o", "-")
    assert report.code == 0 and f'name="{longest}"' in report.stdout
    for run in (read, swept, resumed, report):
        assert PASSWORD not in run.stdout + run.stderr
    assert "alembic_version" in tables(pg, database)


def test_every_form_of_a_url_credential_is_masked() -> None:
    shown = mask("postgresql://u:pw-1@127.138.9.1:5/db?password=pw-2&passwd=pw-3"
                 "&sslpassword=pw-4&sslmode=require&application_name=x")
    assert "pw-" not in shown
    assert shown.count("***") == 4 and "sslmode=require" in shown and "application_name=x" in shown


def test_ipv6_targets_and_blocks_keep_files_apart_from_look_alike_ids(tmp_path: Path) -> None:
    path = inventory(tmp_path, """
        devices:
          - {id: fd00__1, address: 127.138.1.1}
          - {id: fd00__2, address: 127.138.1.2}
        """)
    look_alikes = [d.id for d in load_inventory(path).devices()]
    from_targets = [d.id for d in inventory_from_targets(["fd00::/126", "fe80::1%eth0"])
                    .devices()]
    assert from_targets == ["fd00::", "fd00::1", "fd00::2", "fd00::3", "fe80::1%eth0"]
    names = [record_filename(device_id) for device_id in look_alikes + from_targets]
    assert len(set(names)) == len(names)
    assert record_filename("fe80::1%eth0") == "fe80%3A%3A1%25eth0.record.json"


async def test_report_into_a_new_directory_without_a_store_makes_no_directory(
        tmp_path: Path) -> None:
    run = await iotprobe("report", "--store", "nope.sqlite", "--format", "html", "-o",
                         "sub/r.html", cwd=tmp_path)
    refused(run, "no store at")
    assert entries(tmp_path) == []
