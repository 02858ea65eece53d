"""Outputs checked before the first packet: a scan that cannot write its records is refused
(exit 2) instead of failing after every device was probed.

A file is written aside and renamed into place (probe.record.files.atomic_text), so what must hold
is: the directory exists or can be made, a file can be created in it, and the file's own path
is free, a regular file or a symbolic link (replaced, never followed). A directory there would
stop the rename; a FIFO, socket or device node (`-o /dev/null` as root) would be replaced, and
is not the probe's to replace.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from probe.errors import InputError
from probe.exports import SCAN_FILES
from probe.ids import RECORD_SUFFIX
from probe.inventory import Inventory
from probe.record.files import record_filename
from probe.report import pages_folder


def check_directory(directory: Path, field: str) -> None:
    """Make `directory` if it is missing, and create and remove a file in it; InputError
    saying why when either fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"cannot create the directory {directory}: a file of that name is "
                         "not a directory", field=field) from None
    except OSError as exc:
        raise InputError(f"cannot create the directory {directory}: {_reason(exc)}",
                         field=field) from None
    try:
        fd, trial = tempfile.mkstemp(prefix=".iotprobe-check.", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write in the directory {directory}: {_reason(exc)}",
                         field=field) from None
    os.close(fd)
    Path(trial).unlink()


def check_file(path: Path, field: str) -> None:
    """InputError unless `path` can be written (atomically) before anything is done."""
    check_directory(path.parent, field)
    _refuse_in_the_way(path, field, "")


def check_scan_outputs(outdir: Path, sources: Iterable[Inventory], formats: Iterable[str]) -> None:
    """InputError unless OUTDIR can take the record of every device of `sources` and each
    report file `formats` asks for."""
    check_directory(outdir, "--output-dir")
    for fmt in formats:
        if fmt in SCAN_FILES:
            _refuse_in_the_way(outdir / SCAN_FILES[fmt].filename, "--output-dir",
                               f" (--format {fmt})")
        if fmt == "html":
            check_pages_folder(outdir / SCAN_FILES[fmt].filename, "--output-dir")
    blocked = _blocked_records(outdir)
    if not blocked:
        return
    for inventory in sources:
        for device in inventory.devices():
            name = record_filename(device.id)
            if name in blocked:
                _refuse_in_the_way(outdir / name, "--output-dir",
                                   f" (the record of device {device.id})")


def _blocked_records(outdir: Path) -> set[str]:
    """The record file names in `outdir` taken by something a rename cannot replace."""
    try:
        with os.scandir(outdir) as entries:
            return {entry.name for entry in entries if entry.name.endswith(RECORD_SUFFIX)
                    and not entry.is_symlink() and not entry.is_file(follow_symlinks=False)}
    except OSError as exc:
        raise InputError(f"cannot list the directory {outdir}: {_reason(exc)}",
                         field="--output-dir") from None


def _refuse_in_the_way(path: Path, field: str, what: str) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot write {path}{what}: {_reason(exc)}", field=field) from None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    raise InputError(f"cannot write {path}{what}: it is {kind}", field=field)


def check_pages_folder(report: Path, field: str) -> None:
    """InputError if the folder of the device pages of the HTML report at `report` cannot be
    replaced: something other than a folder (a file, a link) is in its place."""
    folder = pages_folder(report)
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {_reason(exc)}", field=field) from None
    if not stat.S_ISDIR(mode):
        raise InputError(f"cannot write the device pages in {folder}: it is not a folder",
                         field=field)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
