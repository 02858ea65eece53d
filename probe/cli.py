"""The `iotprobe` command line: scan, sweep, worker, diff, report, sweeps, metrics, profiles, lab.

Exit codes (docs/cli.md): 0 every device conformant (failures below --fail-on tolerated),
1 at least one device nonconformant, 2 usage or input error, 3 no failure but at least one
device inconclusive, 4 an internal error of the probe. Each command's help states its own.

Outputs are named alike everywhere: `-o/--output-dir` is the directory of a scan's many files,
`-o/--output` the one file of a report (`-` for stdout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from probe import __version__
from probe.completion import SHELLS, complete_checks, complete_profiles, completion_script
from probe.display import install_log_filter, shown_text
from probe.errors import InputError
from probe.escaping import shown
from probe.exits import EXIT_INPUT, EXIT_INTERNAL
from probe.numbers import MAX_BUDGET, MAX_RATE, MAX_TIMEOUT, Finite
from probe.ratelimit import ADAPTIVE, CEILING, FIXED, FIXED_RATE, RATE_MODES
from probe.secrets import redact

if TYPE_CHECKING:
    from probe.context import ScanOptions
    from probe.distributed.submit import DistributedRunner
    from probe.metrics import Exporter
    from probe.profile import Profile
    from probe.store import Store


def _error(message: object) -> None:
    """`message` on stderr after a red `error:`: data, never markup (probe.display)."""
    Console(stderr=True, highlight=False).print(
        Text.assemble(("error:", "bold red"), " ", shown_text(message)), soft_wrap=True)


def _input_error(exc: InputError) -> NoReturn:
    _error(exc)
    sys.exit(EXIT_INPUT)


def _port_option(value: str | None, field: str) -> tuple[int, ...] | None:
    from probe.portspec import parse_port_spec

    if value is None:
        return None
    try:
        return parse_port_spec(value)
    except ValueError as exc:
        raise InputError(str(exc), field=field) from None


class _Commands(click.Group):
    """The top-level group; `lab` is loaded only when asked for (it imports the emulated
    devices and their servers, a second of start-up every other command, and every scanning
    worker process, would pay for nothing)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "lab"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "lab" and "lab" not in self.commands:
            from probe.lab.cli import lab_group

            self.add_command(lab_group(), "lab")
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iotprobe")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def cli(verbose: int) -> None:
    """Live network conformance probe for IoT fleets (ISO/IEC 27400 6.2 and 6.5).

    Exit codes of scan and sweep: 0 every device conformant, 1 at least one nonconformant,
    2 usage or input error, 3 inconclusive; each command's --help gives its own. Any command
    exits 4 on an internal error of the probe (a bug, never a verdict).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()


def _scan_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The options `scan` and `sweep` share: profile, limits, ports, gate."""
    options = [
        click.option("-p", "--profile", "profiles", multiple=True,
                     shell_complete=complete_profiles,
                     help="Built-in profile id or YAML path; repeat to combine. "
                     "Default: iso27400."),
        click.option("--trust-anchor", type=click.Path(exists=True, dir_okay=False),
                     help="CA bundle device certificates must chain to (overrides the "
                     "inventory)."),
        click.option("--intrusive", is_flag=True, help="Run intrusive checks (credential "
                     "guessing, writes, brute-force throttling)."),
        click.option("--concurrency", type=click.IntRange(1, 10000), default=64,
                     show_default=True, help="Devices scanned at once."),
        click.option("--processes", default="auto", show_default=True,
                     help="Worker processes that scan (each takes a share of --concurrency "
                     "and --rate); auto: one per core, at most one per 50 devices."),
        click.option("--per-device", type=click.IntRange(1, 64), default=4, show_default=True,
                     help="Connections open at once to one device."),
        click.option("--rate", type=Finite(1, MAX_RATE), default=None,
                     help="New connections and datagrams per second, whole scan: the ceiling "
                     f"of the adaptive rate (default {CEILING:g}), or the fixed rate (default "
                     f"{FIXED_RATE:g})."),
        click.option("--rate-mode", type=click.Choice(list(RATE_MODES)), default=ADAPTIVE,
                     show_default=True, help="adaptive: each device and network starts "
                     "slow, speeds up while answered and backs off on congestion "
                     "(docs/rate.md); fixed: always --rate."),
        click.option("--timeout", type=Finite(0.05, MAX_TIMEOUT), default=5.0,
                     show_default=True, help="Seconds for any one network operation."),
        click.option("--budget", type=Finite(0.1, MAX_BUDGET), default=120.0,
                     show_default=True, help="Seconds for one device, all checks included."),
        click.option("--ports", help="TCP ports to scan instead of the profile's set, "
                     "e.g. 1-65535."),
        click.option("--exclude-ports", help="TCP ports never to touch, e.g. 2024."),
        click.option("--syn", is_flag=True, help="SYN scan with raw packets (root) instead "
                     "of connect."),
        click.option("--no-udp", is_flag=True, help="Skip the UDP service probes."),
        click.option("--fail-on", type=click.Choice(["critical", "high", "medium", "low"]),
                     default="low", show_default=True,
                     help="Lowest severity of failure that makes the exit code 1."),
        click.option("-q", "--quiet", is_flag=True, help="No progress display and no "
                     "summary."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _selection_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The check selection `scan` and `sweep` share (probe.selection)."""
    options = [
        click.option("--checks", "checks", multiple=True, metavar="IDS",
                     help="Run only these checks: ids or globs (tls.*), comma-separated, "
                     "repeatable."),
        click.option("--skip-checks", "skip_checks", multiple=True, metavar="IDS",
                     help="Never run these checks: ids or globs, comma-separated, "
                     "repeatable."),
        click.option("--severity", type=click.Choice(["critical", "high", "medium", "low"]),
                     help="Run only checks of this severity or higher."),
        click.option("--control", "controls", multiple=True, metavar="IDS",
                     help="Run only the checks under these controls, e.g. 27400-6.2; "
                     "comma-separated, repeatable."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _note_selection(profile: Profile, quiet: bool) -> None:
    """Say on stderr, unless quiet, that a check selection narrowed the profile."""
    from probe.selection import selection_note

    note = selection_note(profile)
    if note is not None and not quiet:
        Console(stderr=True, highlight=False).print(shown_text(note), soft_wrap=True)


def _processes(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 256:
        raise InputError(f"expected auto or a number of processes from 1 to 256, got {value!r}",
                         field="--processes")
    return count


def _scan_settings(profiles: tuple[str, ...], trust_anchor: str | None, intrusive: bool,
                   concurrency: int, processes: str, per_device: int, rate: float | None,
                   rate_mode: str, timeout: float,
                   budget: float, ports: str | None, exclude_ports: str | None, syn: bool,
                   no_udp: bool, checks: tuple[str, ...], skip_checks: tuple[str, ...],
                   severity: str | None, controls: tuple[str, ...]
                   ) -> tuple[Profile, ScanOptions]:
    from probe.checks.catalogue import catalogue
    from probe.context import ScanOptions
    from probe.profile_loader import load_profiles
    from probe.selection import select, selection_of

    selection = selection_of(checks, skip_checks, severity, controls)
    profile = select(load_profiles(list(profiles) or ["iso27400"]), selection, catalogue())
    options = ScanOptions(
        timeout=timeout, budget=budget, concurrency=concurrency,
        processes=_processes(processes), per_device=per_device,
        rate=rate if rate is not None else (FIXED_RATE if rate_mode == FIXED else CEILING),
        rate_mode=rate_mode, intrusive=intrusive, tcp_ports=_port_option(ports, "--ports"),
        exclude_ports=_port_option(exclude_ports, "--exclude-ports") or (),
        syn=syn, udp=not no_udp, trust_anchor=trust_anchor,
    )
    return profile, options


@cli.command()
@click.argument("targets", nargs=-1)
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Inventory file: YAML, CSV, nmap XML (-oX) or a target list (.txt).")
@click.option("-iL", "--input-list", "input_lists", multiple=True, metavar="FILE",
              help="Targets from a list: IPs, ranges and CIDR blocks, # comments; - for "
              "stdin.")
@click.option("-o", "--output-dir", "--outdir", "outdir",
              type=click.Path(file_okay=False, path_type=Path),
              default=Path("iotprobe-out"), show_default=True,
              help="Directory (made if missing) for <device-id>.record.json and the --format "
              "files; --outdir is the old spelling.")
@click.option("--format", "formats", multiple=True,
              type=click.Choice(["json", "jsonl", "csv", "junit", "html", "oscal"]),
              help="Extra outputs, repeatable: json writes records.json (one document of all "
              "records), csv records.csv (a row per device and check), junit, html and oscal "
              "report.junit.xml, report.html, report.oscal.json, all in the --output-dir; "
              "jsonl streams each record as a line to stdout.")
@_scan_options
@_selection_options
def scan(targets: tuple[str, ...], inventory: Path | None, input_lists: tuple[str, ...],
         outdir: Path, formats: tuple[str, ...], fail_on: str, quiet: bool,
         **settings: Any) -> None:
    """Scan TARGETs (IP, host name, CIDR), target lists and/or an inventory against a
    profile.

    Exit codes: 0 every device conformant (failures below --fail-on tolerated), 1 at least
    one device nonconformant, 2 usage or input error (nothing scanned), 3 no failure but at
    least one device inconclusive.
    """
    from probe.inventory import inventory_from_list, inventory_from_targets, load_inventory
    from probe.model import Severity
    from probe.outputs import check_scan_outputs
    from probe.run import run_scan
    from probe.target_lists import STDIN
    from probe.waivers import CLASSLESS_SUFFIXES, warn_about_waivers

    try:
        if not targets and inventory is None and not input_lists:
            raise InputError("give at least one TARGET, a target list (-iL) or an inventory "
                             "(-i)", field="TARGET")
        if list(input_lists).count(STDIN) > 1:
            raise InputError("standard input can be read once", field="-iL")
        profile, options = _scan_settings(**settings)
        sources = [inventory_from_list(source) for source in input_lists]
        if inventory is not None:
            sources.append(load_inventory(inventory))
        if targets:
            sources.append(inventory_from_targets(list(targets)))
        check_scan_outputs(outdir, sources, formats)
    except InputError as exc:
        _input_error(exc)
    warn_about_waivers(profile, sources, classless=bool(targets or input_lists) or (
        inventory is not None and inventory.suffix.lower() in CLASSLESS_SUFFIXES))
    _note_selection(profile, quiet)
    code = asyncio.run(run_scan(
        sources, profile, options, outdir=outdir, formats=formats,
        fail_on=Severity(fail_on), quiet=quiet,
    ))
    sys.exit(code)


_STORE_HELP = ("Database: a SQLite file path or URL (sqlite:///PATH), or postgresql://USER@HOST:"
               "PORT/DB (password from $PGPASSWORD). Also $IOTPROBE_STORE. Default: "
               "<inventory name>.iotprobe.sqlite beside the inventory.")


def _store_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option("--store", "store_url", envvar="IOTPROBE_STORE", help=_STORE_HELP)(fn)


def _find_store(store_url: str | None, inventory: Path | None, *, create: bool = False) -> Store:
    """The store named by --store, else the one beside the inventory, else the only one in
    the working directory. Only a sweep (`create`) makes one where there is none."""
    from probe.store import DEFAULT_SUFFIX, default_store, open_store

    if store_url:
        return open_store(store_url, create=create)
    if inventory is not None:
        return open_store(str(default_store(inventory)), create=create)
    found = sorted(Path.cwd().glob(f"*{DEFAULT_SUFFIX}"))
    if len(found) != 1:
        what = "none" if not found else ", ".join(p.name for p in found)
        raise InputError(f"name the store with --store or -i INVENTORY (found {what} in the "
                         "working directory)", field="--store")
    return open_store(str(found[0]), create=create)


_BROKER_HELP = ("Celery broker of the workers, e.g. redis://HOST:6379/0. Also "
                "$IOTPROBE_BROKER.")


@cli.command()
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Inventory file: YAML, CSV, nmap XML (-oX) or a target list (.txt). "
              "Required but with --status.")
@_store_option
@click.option("--every", metavar="INTERVAL", help="Repeat on this schedule (30s, 15m, 1h, "
              "1h30m, 1d) until stopped by SIGINT or SIGTERM.")
@click.option("--count", type=click.IntRange(min=1), help="Run this many sweeps: back to "
              "back, or on the --every schedule (default: 1, or no end with --every).")
@click.option("--resume", is_flag=True, help="First finish the latest sweep if it is "
              "unfinished: scan only its devices without a record (with --distributed: send "
              "its unfinished shards again).")
@click.option("--distributed", is_flag=True, help="Scan on the workers of --broker (see "
              "`iotprobe worker`) into a PostgreSQL --store: the inventory goes out in shards, "
              "each to the queue of its devices' site.")
@click.option("--broker", envvar="IOTPROBE_BROKER", help=_BROKER_HELP)
@click.option("--shard-size", type=click.IntRange(1, 10000), help="Devices per shard with "
              "--distributed.  [default: 50]")
@click.option("--no-wait", is_flag=True, help="With --distributed: send the shards and return "
              "at once instead of following the sweep to its summary.")
@click.option("--status", is_flag=True, help="Show the progress of the latest sweep across "
              "workers, then exit.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="After each sweep, write the latest finished sweep's numbers here in the "
              "Prometheus text format, atomically, for node_exporter's textfile collector "
              "(the name ends in .prom).")
@click.option("--metrics-listen", metavar="ADDRESS:PORT", help="With --every, serve the latest "
              "finished sweep's numbers to Prometheus over HTTP on this IP literal and port, "
              "e.g. 127.0.0.1:9464 or [::1]:9464.")
@_scan_options
@_selection_options
def sweep(inventory: Path | None, store_url: str | None, every: str | None, count: int | None,
          resume: bool, distributed: bool, broker: str | None, shard_size: int | None,
          no_wait: bool, status: bool, metrics_file: Path | None, metrics_listen: str | None,
          fail_on: str, quiet: bool, **settings: Any) -> None:
    """Scan the inventory into the store: a numbered, timestamped sweep.

    Exit codes: those of `scan` for the last finished sweep (0 conformant, 1 nonconformant,
    2 usage, input or store error, 3 inconclusive); 128 + the signal number when SIGINT or
    SIGTERM interrupted a sweep. `--status` exits 0.
    """
    from probe.extras import require_extra
    from probe.inventory import load_inventory
    from probe.model import Severity
    from probe.store import StoreError
    from probe.sweep import SweepSettings, parse_interval, run_sweeps
    from probe.waivers import CLASSLESS_SUFFIXES, warn_about_waivers

    if status:
        _sweep_status(store_url, inventory)
        return
    if inventory is None:
        raise click.UsageError("Missing option '-i' / '--inventory'.")
    runner: DistributedRunner | None = None
    try:
        if distributed:
            require_extra("distributed", "--distributed")
        profile, options = _scan_settings(**settings)
        plan = SweepSettings(
            inventory_path=inventory, inventory=load_inventory(inventory), profile=profile,
            options=options, fail_on=Severity(fail_on),
            every=parse_interval(every) if every is not None else None, count=count,
            resume=resume, quiet=quiet)
        if distributed and profile.selection is not None:
            raise InputError("the workers of a distributed sweep run the whole profile: "
                             "select checks in a profile file (`disabled:`) instead of "
                             "--checks, --skip-checks, --severity and --control",
                             field="--distributed")
        if distributed:
            runner = _distributed_runner(broker, settings["profiles"], shard_size, no_wait,
                                         every)
        elif shard_size is not None or no_wait:
            raise InputError("--shard-size and --no-wait go with --distributed",
                             field="--distributed")
        exporter = _exporter(metrics_file, metrics_listen, every)
        store = _find_store(store_url, inventory, create=True)
    except InputError as exc:
        _input_error(exc)
    warn_about_waivers(profile, [plan.inventory],
                       classless=inventory.suffix.lower() in CLASSLESS_SUFFIXES)
    _note_selection(profile, quiet)
    try:
        if runner is not None:
            runner.check(store)
        if exporter is not None:
            exporter.open(store)
        code = asyncio.run(run_sweeps(store, plan, runner,
                                      exporter.after_sweep if exporter else None))
    except InputError as exc:
        _input_error(exc)
    except StoreError as exc:
        _error(f"{exc}; the records stored so far are kept: finish the sweep with --resume")
        sys.exit(EXIT_INPUT)
    finally:
        if exporter is not None:
            exporter.close()
        store.close()
    sys.exit(code)


def _exporter(metrics_file: Path | None, metrics_listen: str | None, every: str | None
              ) -> Exporter | None:
    """What exports each sweep's numbers (checked, nothing bound yet), if anything is to."""
    from probe.metrics import Exporter, parse_listen
    from probe.outputs import check_file

    if metrics_listen is not None and every is None:
        raise InputError("--metrics-listen serves while --every runs; for one sweep use "
                         "--metrics-file or `iotprobe metrics`", field="--metrics-listen")
    listen = parse_listen(metrics_listen) if metrics_listen is not None else None
    if metrics_file is not None:
        if metrics_file.suffix != ".prom":
            raise InputError(f"{metrics_file}: node_exporter's textfile collector reads only "
                             "files whose name ends in .prom", field="--metrics-file")
        check_file(metrics_file, "--metrics-file")
    if listen is None and metrics_file is None:
        return None
    return Exporter(metrics_file, listen)


def _distributed_runner(broker: str | None, profiles: tuple[str, ...], shard_size: int | None,
                        no_wait: bool, every: str | None) -> DistributedRunner:
    from probe.distributed.plan import DEFAULT_SHARD_SIZE
    from probe.distributed.submit import DistributedRunner, DistributedSettings

    if not broker:
        raise InputError("--distributed needs --broker URL (or $IOTPROBE_BROKER)",
                         field="--broker")
    if no_wait and every is not None:
        raise InputError("--every follows each sweep to its end: drop --no-wait",
                         field="--no-wait")
    return DistributedRunner(DistributedSettings(
        broker=broker, profiles=profiles or ("iso27400",),
        shard_size=shard_size or DEFAULT_SHARD_SIZE, wait=not no_wait))


def _sweep_status(store_url: str | None, inventory: Path | None) -> None:
    from probe.extras import require_extra

    try:
        require_extra("distributed", "--status")
    except InputError as exc:
        _input_error(exc)
    from probe.distributed.submit import render_status
    from probe.report.tables import console

    try:
        with _find_store(store_url, inventory) as store:
            console().print(render_status(store))
    except InputError as exc:
        _input_error(exc)


@cli.command()
@click.option("--broker", envvar="IOTPROBE_BROKER", required=True, help=_BROKER_HELP)
@click.option("--store", "store_url", envvar="IOTPROBE_STORE", required=True,
              help="The sweeps' PostgreSQL store: postgresql://USER@HOST:PORT/DB (password "
              "from $PGPASSWORD). Also $IOTPROBE_STORE.")
@click.option("--site", "sites", multiple=True, help="Scan the shards of this site (queue "
              "site.NAME); repeatable. Default: the devices without a site.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Shards scanned at once (each with the sweep's own --concurrency).")
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="This host's copy of the inventory, when it is not at the path the sweep "
              "was started with.")
@click.option("--name", help="Worker name in the store and --status. Default: "
              "iotprobe-PID@HOST.")
@click.option("--visibility-timeout", type=Finite(1, 7 * MAX_BUDGET), default=3600.0,
              show_default=True, help="Seconds before the broker hands a shard whose worker "
              "went silent to another worker; longer than any shard takes.")
def worker(broker: str, store_url: str, sites: tuple[str, ...], concurrency: int,
           inventory: Path | None, name: str | None, visibility_timeout: float) -> None:
    """Scan the shards of distributed sweeps into the shared store (a Celery worker).

    Needs the sweep's inventory and the environment variables and files its secrets come
    from. SIGTERM stops after the running shards; a worker that dies leaves its shards to the
    others.

    Exit codes: 0 stopped cleanly, 2 usage or input error (or a missing extra).
    """
    from probe.extras import require_extra

    try:
        require_extra("distributed", "worker")
    except InputError as exc:
        _input_error(exc)
    from probe.distributed.submit import require_postgresql
    from probe.distributed.worker import default_name, open_shared_store, run_worker

    logging.getLogger("probe.distributed").setLevel(logging.INFO)
    try:
        store = open_shared_store(store_url)
    except InputError as exc:
        _input_error(exc)
    try:
        require_postgresql(store)
        code = run_worker(broker, store, sites=sites, concurrency=concurrency,
                          name=name or default_name(), inventory=inventory,
                          visibility_timeout=visibility_timeout)
    except InputError as exc:
        _input_error(exc)
    finally:
        store.close()
    sys.exit(code)


@cli.command()
@_store_option
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Find the store beside this inventory.")
@click.argument("sweeps", nargs=-1, type=click.IntRange(min=1), metavar="[SWEEP_A SWEEP_B]")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
def diff(store_url: str | None, inventory: Path | None, sweeps: tuple[int, ...],
         as_json: bool) -> None:
    """What changed between two sweeps (default: the last two finished).

    Like is compared with like: when the sweeps ran with different settings (intrusive mode,
    profile digest, checks run, probe version) the diff says so first, and a check not
    assessed in the first sweep (skipped or absent) that fails in the second is "newly
    assessed", not a regression.

    Exit codes: 1 when a check assessed in both sweeps newly fails (a regression), else 0
    (a change of settings alone never gives 1); 2 usage or input error.
    """
    from probe.report.tables import console
    from probe.store.queries import diff as compare
    from probe.sweep import pick_pair, render_diff

    try:
        with _find_store(store_url, inventory) as store:
            a, b = pick_pair(store, sweeps)
            changes = compare(store, a, b)
    except InputError as exc:
        _input_error(exc)
    if as_json:
        click.echo(json.dumps(changes.as_json(), indent=2))
    else:
        console().print(render_diff(changes))
    sys.exit(1 if changes.regressions else 0)


@cli.command()
@_store_option
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Find the store beside this inventory.")
@click.argument("number", required=False, type=click.IntRange(min=1), metavar="[SWEEP]")
@click.option("--format", "fmt", required=True,
              type=click.Choice(["html", "junit", "oscal", "json", "jsonl", "csv"]),
              help="Report format, or an export of the records: json (one document), jsonl "
              "(a record a line), csv (a row per device and check).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The one file to write (made atomically); - for stdout.")
def report(store_url: str | None, inventory: Path | None, number: int | None, fmt: str,
           output: Path) -> None:
    """Render a stored sweep (default: the latest finished) as html, junit or oscal, or
    export its records as json, jsonl or csv.

    Exit codes: 0 written, 2 usage or input error (no such sweep or store, unwritable file).
    """
    from probe.exports import write_output, write_output_file
    from probe.outputs import check_file, check_pages_folder
    from probe.sweep import pick_sweep, sweep_source

    try:
        with _find_store(store_url, inventory) as store:
            if str(output) != "-":
                check_file(output, "--output")
                if fmt == "html":
                    check_pages_folder(output, "--output")
            chosen = pick_sweep(store, number)
            if not chosen.finished:
                Console(stderr=True, highlight=False).print(
                    shown_text(f"note: sweep {chosen.label()} is not finished"), soft_wrap=True)
            source = sweep_source(store, chosen)
            if str(output) == "-":
                write_output(fmt, source, sys.stdout)
            else:
                write_output_file(fmt, source, output)
    except InputError as exc:
        _input_error(exc)


@cli.command()
@_store_option
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Find the store beside this inventory.")
@click.argument("number", required=False, type=click.IntRange(min=1), metavar="[SWEEP]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default="-", show_default=True, help="File to write atomically (e.g. "
              "NAME.prom in node_exporter's textfile directory); - for stdout.")
def metrics(store_url: str | None, inventory: Path | None, number: int | None,
            output: Path) -> None:
    """Print a stored sweep's numbers (default: the latest finished) in the Prometheus text
    format: the metrics `sweep --metrics-file` and `--metrics-listen` export (docs/metrics.md).

    Exit codes: 0 printed or written, 2 usage, input or store error (no such sweep).
    """
    from probe.metrics import SweepMetrics
    from probe.outputs import check_file
    from probe.record.files import write_atomic
    from probe.store import StoreError
    from probe.sweep import pick_sweep

    exported = SweepMetrics()
    try:
        with _find_store(store_url, inventory) as store:
            if str(output) != "-":
                check_file(output, "--output")
            exported.show(store, pick_sweep(store, number))
    except InputError as exc:
        _input_error(exc)
    except StoreError as exc:
        _error(exc)
        sys.exit(EXIT_INPUT)
    if str(output) == "-":
        click.echo(exported.exposition(), nl=False)
        return
    try:
        write_atomic(output, exported.exposition())
    except OSError as exc:
        _input_error(InputError(f"cannot write {output}: {exc.strerror or exc}",
                                field="--output"))


@cli.command()
@_store_option
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Find the store beside this inventory.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweeps as JSON (with each "
              "profile's digest and the probe's version).")
def sweeps(store_url: str | None, inventory: Path | None, as_json: bool) -> None:
    """List the sweeps in the store: number, start, state, mode, profile, verdict counts.

    Exit codes: 0 listed, 2 usage or input error (no store).
    """
    from probe.history import sweep_lines, sweeps_table
    from probe.report.tables import console

    try:
        with _find_store(store_url, inventory) as store:
            lines = sweep_lines(store)
            location = store.location
    except InputError as exc:
        _input_error(exc)
    if as_json:
        click.echo(json.dumps([line.as_json() for line in lines], indent=2))
    else:
        console().print(sweeps_table(lines, location))


@cli.group()
def profiles() -> None:
    """Built-in and user profiles, and the check catalogue.

    Exit codes of every subcommand: 0 done, 2 usage or input error (an unknown or invalid
    profile).
    """


@profiles.command("list")
def profiles_list() -> None:
    """List the built-in profiles.

    Exit codes: 0 listed, 2 usage error or an invalid built-in profile.
    """
    from probe.profile_loader import builtin_profile_ids, load_profile
    from probe.report.tables import console, profiles_table

    try:
        loaded = [load_profile(pid) for pid in builtin_profile_ids()]
    except InputError as exc:
        _input_error(exc)
    console().print(profiles_table(loaded))


@profiles.command("show")
@click.argument("profile", shell_complete=complete_profiles)
def profiles_show(profile: str) -> None:
    """Show a resolved profile (built-in id or YAML path): controls, checks, waivers.

    Exit codes: 0 shown, 2 usage or input error (no such profile, an invalid one).
    """
    from probe.profile_loader import load_profile
    from probe.report.tables import console, profile_detail

    try:
        loaded = load_profile(profile)
    except InputError as exc:
        _input_error(exc)
    console().print(profile_detail(loaded))


@profiles.command("checks")
@click.argument("wanted", nargs=-1, metavar="[CHECK]...", shell_complete=complete_checks)
@click.option("--json", "as_json", is_flag=True,
              help="Print every check as JSON: declaration, parameters, references and the "
              "pass/fail rule (the data of docs/checks.md).")
def profiles_checks(wanted: tuple[str, ...], as_json: bool) -> None:
    """List the check catalogue, or only the CHECKs given (ids or globs such as 'tls.*').

    Exit codes: 0 listed, 2 usage error (a CHECK that names no check).
    """
    from probe.checks.catalogue import catalogue

    try:
        chosen = _chosen_checks(sorted(catalogue()), wanted)
    except InputError as exc:
        _input_error(exc)
    if as_json:
        from probe.catalogue_doc import catalogue_data

        data = [entry for entry in catalogue_data() if entry["id"] in chosen]
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from probe.report.tables import catalogue_table, console

    console().print(catalogue_table({cid: catalogue()[cid] for cid in chosen}))


def _chosen_checks(ids: list[str], wanted: tuple[str, ...]) -> list[str]:
    """The ids among `ids` that a pattern of `wanted` matches (all without patterns)."""
    from fnmatch import fnmatchcase

    for pattern in wanted:
        if not any(fnmatchcase(cid, pattern) for cid in ids):
            raise InputError(f"{pattern!r} names no check (see `iotprobe profiles checks`)",
                             field="CHECK")
    return [cid for cid in ids if not wanted or any(fnmatchcase(cid, p) for p in wanted)]


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete iotprobe's commands, options, profile ids
    and check ids. Load it once per session, e.g. in ~/.bashrc:

    \b
        eval "$(iotprobe completion bash)"

    Exit codes: 0 printed, 2 usage error (a shell it does not know).
    """
    click.echo(completion_script(cli, shell))


def main(argv: list[str] | None = None) -> Any:
    """The command line. An exception nothing handled is a bug of the probe: it exits
    EXIT_INTERNAL with the traceback, never 1 or 3, which are verdicts on the devices."""
    try:
        return cli.main(args=argv, prog_name="iotprobe")
    except Exception:
        # the traceback may quote device data: redacted and escaped like every log line
        for line in traceback.format_exc().splitlines():
            click.echo(shown(redact(line)), err=True)
        click.echo("iotprobe: internal error (a bug of the probe, not a verdict on any "
                   f"device): exit {EXIT_INTERNAL}; the records already written stand",
                   err=True)
        sys.exit(EXIT_INTERNAL)
