"""nmap's NSE scripts as reference tools of the matrix: one script against one port of one
peer, with the address as an IP literal (`-n`, no name lookup), no host discovery and bounded
in time. The probe's reserved port is never named, so never scanned."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

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
