"""The lab's state directory: lab.json (who runs the lab, which devices), the lab CA, the log.

Whether a lab runs is read from /proc: the pid in lab.json must exist, not be a zombie (PID 1
here does not reap, so a stopped lab can linger as one) and still be a lab process (pids get
reused).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"
CA_FILE = "lab-ca.pem"
LOG_FILE = "lab.log"
LOCK_FILE = "lab.lock"


def default_state_dir() -> Path:
    env = os.environ.get("IOTPROBE_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "iotprobe"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """lab.json, or None when there is none or it is unreadable (a crash mid-write)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    return data


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    write_atomically(state_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def remove_owned(state_dir: Path, pid: int) -> None:
    """Remove lab.json and the CA if lab.json still names `pid` (nobody else's lab)."""
    state = read_state(state_dir)
    if state is None or state["pid"] != pid:
        return
    for name in (STATE_FILE, CA_FILE):
        (state_dir / name).unlink(missing_ok=True)


def remove_state(state_dir: Path) -> None:
    for name in (STATE_FILE, CA_FILE):
        (state_dir / name).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()
    return bool(state) and state[0] not in ("Z", "X")


def is_lab_process(pid: int) -> bool:
    """True if `pid` is alive and runs a foreground lab."""
    if not process_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return (b"lab" in argv or b"probe.lab" in argv) and b"up" in argv and b"--foreground" in argv


def running_lab(state_dir: Path) -> dict[str, Any] | None:
    state = read_state(state_dir)
    return state if state is not None and is_lab_process(state["pid"]) else None


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
