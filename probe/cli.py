"""The `iotprobe` command line: scan, profiles, lab.

Exit codes (PRODUCT.md): 0 every device conformant (failures below --fail-on tolerated),
1 at least one device nonconformant, 2 usage or input error, 3 no failure but at least one
device inconclusive.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from probe import __version__
from probe.errors import InputError

EXIT_OK, EXIT_NONCONFORMANT, EXIT_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def _input_error(exc: InputError) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {exc}", markup=True)
    sys.exit(EXIT_INPUT)


def _port_option(value: str | None, field: str) -> tuple[int, ...] | None:
    from probe.portspec import parse_port_spec

    if value is None:
        return None
    try:
        return parse_port_spec(value)
    except ValueError as exc:
        raise InputError(str(exc), field=field) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iotprobe")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def cli(verbose: int) -> None:
    """Live network conformance probe for IoT fleets (ISO/IEC 27400 6.2 and 6.5)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("targets", nargs=-1)
@click.option("-i", "--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Inventory file (YAML or CSV).")
@click.option("-p", "--profile", "profiles", multiple=True,
              help="Built-in profile id or YAML path; repeat to combine. Default: iso27400.")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("iotprobe-out"), show_default=True,
              help="Directory for <device-id>.record.json.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["json", "jsonl"]),
              help="Extra output formats: jsonl streams records to stdout.")
@click.option("--trust-anchor", type=click.Path(exists=True, dir_okay=False),
              help="CA bundle device certificates must chain to (overrides the inventory).")
@click.option("--intrusive", is_flag=True, help="Run intrusive checks (credential guessing, "
              "writes, brute-force throttling).")
@click.option("--concurrency", type=click.IntRange(1, 10000), default=64, show_default=True,
              help="Devices scanned at once.")
@click.option("--per-device", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Connections open at once to one device.")
@click.option("--rate", type=click.FloatRange(min=1), default=500.0, show_default=True,
              help="New connections and datagrams per second, whole scan.")
@click.option("--timeout", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
              help="Seconds for any one network operation.")
@click.option("--budget", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds for one device, all checks included.")
@click.option("--ports", help="TCP ports to scan instead of the profile's set, e.g. 1-65535.")
@click.option("--exclude-ports", help="TCP ports never to touch, e.g. 2024.")
@click.option("--syn", is_flag=True, help="SYN scan with raw packets (root) instead of connect.")
@click.option("--no-udp", is_flag=True, help="Skip the UDP service probes.")
@click.option("--fail-on", type=click.Choice(["critical", "high", "medium", "low"]),
              default="low", show_default=True,
              help="Lowest severity of failure that makes the exit code 1.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display and no summary.")
def scan(targets: tuple[str, ...], inventory: Path | None, profiles: tuple[str, ...],
         outdir: Path, formats: tuple[str, ...], trust_anchor: str | None, intrusive: bool,
         concurrency: int, per_device: int, rate: float, timeout: float, budget: float,
         ports: str | None, exclude_ports: str | None, syn: bool, no_udp: bool, fail_on: str,
         quiet: bool) -> None:
    """Scan TARGETs (IP, host name, CIDR) and/or an inventory against a profile."""
    from probe.context import ScanOptions
    from probe.inventory import inventory_from_targets, load_inventory
    from probe.model import Severity
    from probe.profile_loader import load_profiles
    from probe.run import run_scan

    try:
        if not targets and inventory is None:
            raise InputError("give at least one TARGET or an inventory (-i)", field="TARGET")
        profile = load_profiles(list(profiles) or ["iso27400"])
        sources = []
        if inventory is not None:
            sources.append(load_inventory(inventory))
        if targets:
            sources.append(inventory_from_targets(list(targets)))
        options = ScanOptions(
            timeout=timeout, budget=budget, concurrency=concurrency, per_device=per_device,
            rate=rate, intrusive=intrusive, tcp_ports=_port_option(ports, "--ports"),
            exclude_ports=_port_option(exclude_ports, "--exclude-ports") or (),
            syn=syn, udp=not no_udp, trust_anchor=trust_anchor,
        )
    except InputError as exc:
        _input_error(exc)
    code = asyncio.run(run_scan(
        sources, profile, options, outdir=outdir, jsonl="jsonl" in formats,
        fail_on=Severity(fail_on), quiet=quiet,
    ))
    sys.exit(code)


@cli.group()
def profiles() -> None:
    """Built-in and user profiles, and the check catalogue."""


@profiles.command("list")
def profiles_list() -> None:
    """List the built-in profiles."""
    from probe.profile_loader import builtin_profile_ids, load_profile
    from probe.report.tables import console, profiles_table

    try:
        loaded = [load_profile(pid) for pid in builtin_profile_ids()]
    except InputError as exc:
        _input_error(exc)
    console().print(profiles_table(loaded))


@profiles.command("show")
@click.argument("profile")
def profiles_show(profile: str) -> None:
    """Show a resolved profile (built-in id or YAML path): controls, checks, waivers."""
    from probe.profile_loader import load_profile
    from probe.report.tables import console, profile_detail

    try:
        loaded = load_profile(profile)
    except InputError as exc:
        _input_error(exc)
    console().print(profile_detail(loaded))


@profiles.command("checks")
def profiles_checks() -> None:
    """List the check catalogue."""
    from probe.checks import catalogue
    from probe.report.tables import catalogue_table, console

    console().print(catalogue_table(catalogue()))


def _mount_lab() -> None:
    from probe.lab.cli import lab_group

    cli.add_command(lab_group(), "lab")


_mount_lab()


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="iotprobe")
