"""`iotprobe lab up | down | status | personas | selftest`: run a lab on loopback.

`up` starts the lab as a background process (`python -m probe.lab up --foreground ...` in a
new session, probe.lab.lifecycle) and returns once every listener is bound: the emulated fleet,
or with `--real` the real daemons of lab/docker-compose.yml (probe.lab.real). The lab process owns
<state-dir>/lab.json and the lab CA beside it, holds <state-dir>/lab.lock while it runs, and
removes both files when it stops; `down` stops it by the pid in lab.json. `selftest` starts a
lab, scans it and compares every result with what its devices declare (probe.lab.selftest).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from ruamel.yaml import YAML

from probe.errors import InputError
from probe.exits import EXIT_INPUT
from probe.lab.expectations import DEFAULT, INTRUSIVE, Declares, Scan, expected
from probe.lab.fleet import DEFAULT_BASE, DeviceSpec, LabBindError, plan_fleet, run_fleet
from probe.lab.lifecycle import READY, LabError, start_background, stop_lab
from probe.lab.personas import PERSONAS
from probe.lab.personas.base import Persona
from probe.lab.real import REAL_BASE, REAL_DEVICES, RealLab, RealLabError, RealSpec, plan_real
from probe.lab.servers import FORBIDDEN_PORT, ports_of
from probe.lab.state import (
    CA_FILE,
    LOCK_FILE,
    default_state_dir,
    is_lab_process,
    read_state,
    remove_owned,
    running_lab,
    write_atomically,
    write_state,
)
from probe.numbers import MAX_TIMEOUT, Finite

log = logging.getLogger(__name__)

EXIT_NOT_RUNNING = 1


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _select_personas(names: str | None) -> list[Persona]:
    if names is None:
        return list(PERSONAS.values())
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if name not in PERSONAS:
            raise InputError(f"unknown persona {name!r}; known: {', '.join(PERSONAS)}",
                             field="--personas")
        chosen.append(PERSONAS[name])
    return chosen


def _listeners_text(listeners: Sequence[dict[str, Any]]) -> str:
    return " ".join(
        f"{item['transport']}/{item['port']}" + ("+tls" if item.get("tls") else "")
        for item in listeners
    ) or "-"


def _statuses(device: Declares, scan: Scan = DEFAULT) -> str:
    """`check=status, ...` the device must get in `scan`; for a scan with --intrusive, only
    where it differs from the default scan."""
    default = expected(device)
    shown = expected(device, scan)
    return ", ".join(f"{c}={s.value}" for c, s in shown.items()
                     if scan == DEFAULT or default.get(c) != s) or "-"


def _table(devices: Sequence[dict[str, Any]]) -> str:
    rows = [("ID", "ADDRESS", "PERSONA", "CLASS", "LISTENERS")]
    rows += [(d["id"], d["address"], d["persona"], d["class"], _listeners_text(d["listeners"]))
             for d in devices]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  " + row[4]
        for row in rows
    )


def inventory_yaml(specs: Sequence[DeviceSpec], trust_anchor: Path) -> str:
    """The inventory for scanning the lab; expectations stay out of it (they are in lab.json).

    The lab's certificates chain to a CA made at start, so the inventory names it as the trust
    anchor: the TLS trust verdicts the personas declare hold for a scan of this inventory."""
    data = {
        "defaults": {"exclude_ports": [FORBIDDEN_PORT], "trust_anchor": str(trust_anchor)},
        "devices": [
            {"id": s.id, "address": s.address, "class": s.persona.device_class} for s in specs
        ],
    }
    out = StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.representer.sort_base_mapping_type_on_output = False
    yaml.dump(data, out)
    return "# written by `iotprobe lab up`\n" + out.getvalue()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve(specs: Sequence[DeviceSpec], base: str, state_dir: Path,
                 inventory_out: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pid = os.getpid()
    fleet = await run_fleet(specs)
    try:
        write_atomically(state_dir / CA_FILE, fleet.ca_pem.decode())
        _announce(state_dir, {
            "pid": pid,
            "kind": "emulated",
            "base": base,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "trust_anchor": str(state_dir / CA_FILE),
            "inventory": str(inventory_out) if inventory_out else None,
            "devices": [spec.as_state() for spec in specs],
        }, inventory_out, inventory_yaml(specs, state_dir / CA_FILE))
        await stop.wait()
        log.info("lab stopping")
    finally:
        await fleet.stop()
        remove_owned(state_dir, pid)


def _hold_lab_lock(state_dir: Path) -> IO[str]:
    """Log to stderr and take the state dir's lock (held until the returned file is closed): one
    foreground lab per state dir, whatever kind."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = (state_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        _fail(f"another lab holds {state_dir / LOCK_FILE}")
    return lock


def _run_foreground(specs: Sequence[DeviceSpec], base: str, state_dir: Path,
                    inventory_out: Path | None) -> None:
    lock = _hold_lab_lock(state_dir)
    _raise_fd_limit()
    try:
        asyncio.run(_serve(specs, base, state_dir, inventory_out))
    except LabBindError as exc:
        _fail(f"{exc} (is another lab or service using it? as non-root, ports below 1024 "
              "need privileges)")
    finally:
        lock.close()
    log.info("lab stopped")


def _announce(state_dir: Path, state: dict[str, Any], inventory_out: Path | None,
              inventory: str) -> None:
    write_state(state_dir, state)
    if inventory_out is not None:
        write_atomically(inventory_out, inventory)
    click.echo(_table(state["devices"]))
    click.echo(f"{READY}: {len(state['devices'])} devices, pid {state['pid']}; stop with "
               "`iotprobe lab down`")


def _serve_real(specs: Sequence[RealSpec], base: str, state_dir: Path,
                inventory_out: Path | None) -> None:
    """Run the real daemons until SIGTERM or SIGINT, reaping any that dies meanwhile."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    pid = os.getpid()
    lab = RealLab(specs, state_dir)
    try:
        lab.start()
        write_atomically(state_dir / CA_FILE, lab.ca_pem)
        pids = lab.pids()
        _announce(state_dir, {
            "pid": pid,
            "kind": "real",
            "base": base,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "trust_anchor": str(state_dir / CA_FILE),
            "inventory": str(inventory_out) if inventory_out else None,
            "devices": [{**spec.as_state(), "pid": pids[spec.id]} for spec in specs],
        }, inventory_out, lab.inventory_yaml(state_dir / CA_FILE))
        reported: set[str] = set()
        while not stop.wait(1.0):
            for device_id, code in lab.exited():
                if device_id not in reported:
                    reported.add(device_id)
                    log.error("%s: its daemon exited with status %s", device_id, code)
        log.info("lab stopping")
    finally:
        lab.stop()
        remove_owned(state_dir, pid)


def _run_foreground_real(specs: Sequence[RealSpec], base: str, state_dir: Path,
                         inventory_out: Path | None) -> None:
    lock = _hold_lab_lock(state_dir)
    try:
        _serve_real(specs, base, state_dir, inventory_out)
    except RealLabError as exc:
        _fail(str(exc), 1)
    finally:
        lock.close()
    log.info("lab stopped")


def _start_background(state_dir: Path, inventory_out: Path | None, **how: Any) -> None:
    try:
        state = start_background(state_dir, inventory_out=inventory_out, **how)
    except LabError as exc:
        _fail(str(exc), exc.code)
    click.echo(_table(state["devices"]))
    click.echo(f"lab running: {len(state['devices'])} devices, pid {state['pid']}, state "
               f"{state_dir}")
    if inventory_out is not None:
        click.echo(f"inventory: {inventory_out}")


def _state_dir_option(fn: Any) -> Any:
    return click.option(
        "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Where lab.json lives. Default: $IOTPROBE_STATE_DIR or ~/.local/state/iotprobe.",
    )(fn)


def _resolve_state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).expanduser().absolute()


def lab_group() -> click.Group:
    @click.group("lab")
    def lab() -> None:
        """IoT devices with known good and bad configurations on 127.0.0.0/8: the emulated
        fleet, or the real daemons of lab/docker-compose.yml (--real).

        Exit codes: each subcommand's --help; 2 is always a usage or input error."""

    @lab.command("up")
    @click.option("--devices", type=click.IntRange(min=1), default=None,
                  help="How many devices. Default: one per persona.")
    @click.option("--base", default=None,
                  help=f"Address of the first device; device i gets base + i. Default: "
                  f"{DEFAULT_BASE}, with --real {REAL_BASE}.")
    @click.option("--inventory-out", type=click.Path(dir_okay=False, path_type=Path),
                  help="Write a YAML inventory of the lab here.")
    @click.option("--personas", "persona_names", metavar="A,B,...",
                  help="Personas to cycle through (see `lab personas`). Default: all.")
    @click.option("--real", is_flag=True,
                  help="Run the real daemons of lab/docker-compose.yml (mosquitto, nginx, "
                  "libcoap, busybox telnetd) from the same configurations, one loopback "
                  "address per device, instead of the emulated fleet.")
    @click.option("--foreground", is_flag=True,
                  help="Run the lab in this process until SIGTERM or Ctrl-C.")
    @_state_dir_option
    def up(devices: int | None, base: str | None, inventory_out: Path | None,
           persona_names: str | None, real: bool, foreground: bool,
           state_dir: Path | None) -> None:
        """Start the lab: device i runs persona i mod len(personas) on address base + i
        (with --real: device i of the real lab).

        Exit codes: 0 the lab runs, 1 it did not come up, 2 usage or input error (or a lab
        already running in the state directory)."""
        directory = _resolve_state_dir(state_dir)
        personas: list[Persona] = []
        try:
            if real:
                for given, option in ((devices, "--devices"), (persona_names, "--personas")):
                    if given is not None:
                        raise InputError("the real lab runs each of its devices once",
                                         field=option)
                real_specs = plan_real(base or REAL_BASE)
            else:
                personas = _select_personas(persona_names)
                specs = plan_fleet(personas, devices or len(personas), base or DEFAULT_BASE)
        except InputError as exc:
            _fail(str(exc))
        running = running_lab(directory)
        if running is not None:
            _fail(f"a lab is already running (pid {running['pid']}, state in {directory}); "
                  "stop it with `iotprobe lab down` or choose another --state-dir")
        inventory = inventory_out.absolute() if inventory_out is not None else None
        if real:
            if foreground:
                _run_foreground_real(real_specs, base or REAL_BASE, directory, inventory)
            else:
                _start_background(directory, inventory, base=base or REAL_BASE, real=True)
        elif foreground:
            _run_foreground(specs, base or DEFAULT_BASE, directory, inventory)
        else:
            _start_background(directory, inventory, base=base or DEFAULT_BASE,
                              devices=len(specs), personas=personas)

    @lab.command("down")
    @_state_dir_option
    def down(state_dir: Path | None) -> None:
        """Stop the lab recorded in the state directory and remove its state.

        Exit codes: 0 stopped (or none was running), 1 its process does not exit."""
        try:
            click.echo(stop_lab(_resolve_state_dir(state_dir)))
        except LabError as exc:
            _fail(str(exc), exc.code)

    @lab.command("status")
    @_state_dir_option
    def status(state_dir: Path | None) -> None:
        """Show the lab's devices.

        Exit codes: 0 the lab runs, 1 it does not."""
        directory = _resolve_state_dir(state_dir)
        state = read_state(directory)
        if state is None:
            click.echo(f"no lab recorded in {directory}")
            sys.exit(EXIT_NOT_RUNNING)
        running = is_lab_process(state["pid"])
        click.echo(_table(state["devices"]))
        click.echo(f"lab {'running' if running else 'NOT running'}: pid {state['pid']}, "
                   f"{len(state['devices'])} devices, trust anchor {state['trust_anchor']}")
        if not running:
            sys.exit(EXIT_NOT_RUNNING)

    @lab.command("personas")
    @click.option("--real", is_flag=True, help="The devices of the real lab instead.")
    @click.option("--markdown", is_flag=True,
                  help="One Markdown table of every device of both labs and what it "
                  "demonstrates.")
    def personas(real: bool, markdown: bool) -> None:
        """List the personas and what the probe must report for each.

        Exit codes: 0 listed, 2 usage error."""
        if markdown:
            from probe.lab.selftest import markdown_table

            click.echo(markdown_table(), nl=False)
            return
        if real:
            for device in REAL_DEVICES:
                ports = _listeners_text([listen.as_state() for listen in device.listeners])
                click.echo(f"{device.name} ({device.device_class}, {device.daemon} "
                           f"{device.config}): {device.description}")
                click.echo(f"    listens: {ports}")
                click.echo(f"    expect: {_statuses(device)}; verdict "
                           f"{device.expect_verdict.value}")
                click.echo(f"    with --intrusive: {_statuses(device, INTRUSIVE)}")
            return
        for persona in PERSONAS.values():
            ports = _listeners_text(ports_of(persona.listeners))
            click.echo(f"{persona.name} ({persona.device_class}): {persona.description}")
            click.echo(f"    listens: {ports}")
            click.echo(f"    expect: {_statuses(persona)}; verdict {persona.expect_verdict.value}")

    @lab.command("selftest")
    @click.option("--real", is_flag=True, help="Test the real lab instead of the emulated one.")
    @click.option("--base", default=None,
                  help=f"Address of the first device. Default: {DEFAULT_BASE}, with --real "
                  f"{REAL_BASE}.")
    @click.option("--timeout", type=Finite(0.05, MAX_TIMEOUT), default=2.0, show_default=True,
                  help="Seconds for any one network operation of the scans.")
    @_state_dir_option
    def selftest(real: bool, base: str | None, timeout: float,
                 state_dir: Path | None) -> None:
        """Start a lab, scan it with the iso27400 profile with and without --intrusive,
        compare every result with what its devices declare, print the table and the coverage
        of the check catalogue.

        Exit codes: 0 every result as declared, 1 any disagreement, 2 usage or input error."""
        from probe.lab.selftest import run_selftest

        directory = _resolve_state_dir(state_dir)
        try:
            code = run_selftest(directory, real=real,
                                base=base or (REAL_BASE if real else DEFAULT_BASE),
                                timeout=timeout, echo=click.echo)
        except InputError as exc:
            _fail(str(exc))
        except LabError as exc:
            _fail(str(exc), exc.code)
        sys.exit(code)

    return lab
