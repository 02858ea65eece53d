"""nmap's NSE scripts as reference tools of the matrix: one script against one port of one
peer, with the address as an IP literal (`-n`, no name lookup), no host discovery and bounded
in time. The probe's reserved port is never named, so never scanned."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from interop import RESERVED_PORT

SCRIPT_TIMEOUT = "120s"
RUN_TIMEOUT = 300.0


def script(address: str, port: int, name: str, *, udp: bool = False,
           args: Sequence[str] = ()) -> list[str]:
    """What NSE script `name` printed for `address`:`port` (its lines, without nmap's `| ` and
    `|_` prefixes), or nothing when it printed nothing. A leading `+` in `name` runs the script
    even where nmap did not identify the service it is meant for."""
    if port == RESERVED_PORT:
        raise ValueError(f"port {RESERVED_PORT} is never scanned")
    argv = ["nmap", "-n", "-Pn", "-sU" if udp else "-sT", "-p", str(port), "--script", name,
            "--script-timeout", SCRIPT_TIMEOUT, *(["--script-args", ",".join(args)] if args
                                                   else []), address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    return [line[2:] for line in done.stdout.splitlines() if line.startswith(("| ", "|_"))]


@dataclass(frozen=True)
class Guesses:
    """What one of nmap's `*-brute` scripts said: the first user it found valid credentials
    for, and its statistics line (`Performed N guesses in ...`)."""

    said: list[str]
    user: str | None
    statistics: str | None

    @property
    def no_valid_account(self) -> bool:
        return any("No valid accounts found" in line for line in self.said)


def brute(address: str, port: int, name: str, pairs: Sequence[tuple[str, str]],
          args: Sequence[str] = ()) -> Guesses:
    """NSE script `name` (`ssh-brute`, `telnet-brute`) trying exactly `pairs`, in order, one
    guess at a time a second apart, stopping at the first valid one."""
    with tempfile.TemporaryDirectory(prefix="iotprobe-brute-") as tmp:
        creds = Path(tmp) / "creds"
        creds.write_text("".join(f"{user}/{password}\n" for user, password in pairs))
        said = script(address, port, name, args=(
            "brute.mode=creds", f"brute.credfile={creds}", "brute.threads=1", "brute.delay=1",
            "brute.firstonly=true", *args))
    valid = [line.strip() for line in said if "Valid credentials" in line]
    statistics = [line.strip() for line in said if line.strip().startswith("Statistics:")]
    return Guesses(said, valid[0].split(":", 1)[0] if valid else None,
                   statistics[0] if statistics else None)
