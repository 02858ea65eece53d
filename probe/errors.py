"""Errors the user can act on: bad inventory, bad profile, bad command line (exit code 2)."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input, located as precisely as we can: file, line, field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"
