"""Starting and stopping a lab process from another process: `iotprobe lab up` and `down`, and
the self-test (probe.lab.selftest), which runs its own lab.

`start_background` runs `python -m probe.lab up --foreground ...` in a new session and returns
once it printed READY (every listener bound); `stop_lab` stops the process recorded in
<state-dir>/lab.json and removes that state.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from probe.exits import EXIT_INPUT
from probe.lab.personas.base import Persona
from probe.lab.state import LOG_FILE, is_lab_process, read_state, remove_state, wait_gone

READY = "iotprobe lab ready"
"""The line the lab process prints once it serves."""
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class LabError(Exception):
    """A lab could not be started or stopped; `code` is the exit code to give."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _wait_ready(stdout: IO[bytes]) -> bool | None:
    """Read the child's stdout until the ready line (True), its end (False: the child is
    exiting), or START_TIMEOUT (None)."""
    deadline = time.monotonic() + START_TIMEOUT
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                return False
            buf += chunk
            if READY.encode() in buf:
                return True
            buf = buf[buf.rfind(b"\n") + 1:]
    return None


def start_background(state_dir: Path, *, base: str, inventory_out: Path | None,
                     real: bool = False, devices: int | None = None,
                     personas: Sequence[Persona] = ()) -> dict[str, Any]:
    """Start a lab process in a new session and wait until it is ready; its state (lab.json).
    Raises LabError when it does not come up."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    cmd = [sys.executable, "-m", "probe.lab", "up", "--foreground", "--base", base,
           "--state-dir", str(state_dir)]
    if real:
        cmd.append("--real")
    else:
        cmd += ["--devices", str(devices), "--personas", ",".join(p.name for p in personas)]
    if inventory_out is not None:
        cmd += ["--inventory-out", str(inventory_out)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log_file, start_new_session=True)
    assert proc.stdout is not None
    with proc.stdout:
        ready = _wait_ready(proc.stdout)
    if not ready:
        if ready is False:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise LabError(f"the lab did not come up within {START_TIMEOUT:.0f}s; see "
                           f"{log_path}", 1)
        errors = [line for line in log_path.read_text(errors="replace").splitlines()
                  if line.startswith("error:")]
        raise LabError(errors[-1].removeprefix("error: ") if errors
                       else f"the lab exited with code {proc.returncode}; see {log_path}",
                       EXIT_INPUT if proc.returncode == EXIT_INPUT else 1)
    state = read_state(state_dir)
    assert state is not None and state["pid"] == proc.pid
    return state


def stop_lab(state_dir: Path) -> str:
    """Stop the lab recorded in `state_dir` and remove its state; what happened, in a line.
    Raises LabError when its process does not exit."""
    state = read_state(state_dir)
    if state is None:
        return f"no lab recorded in {state_dir}"
    pid = state["pid"]
    if is_lab_process(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not wait_gone(pid, STOP_TIMEOUT):
                raise LabError(f"lab process {pid} does not exit", 1)
        message = f"lab stopped (pid {pid})"
    else:
        message = f"lab (pid {pid}) was not running; removed its stale state"
    remove_state(state_dir)
    return message
