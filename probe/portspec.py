"""Port specifications: `"1-1024,8883"`, `443`, `[80, "8000-8100"]` -> a sorted tuple of ports.

The same grammar serves the inventory (`ports`, `exclude_ports`, `services`), profiles
(`scan.tcp_ports`) and the command line. Errors are ValueErrors with a message fit for the user;
callers add the file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_PORT = 1
MAX_PORT = 65535

_NUMBER = re.compile(r"[0-9]+")


def parse_port_spec(text: str | int | list[str | int] | tuple[str | int, ...]) -> tuple[int, ...]:
    """The ports `text` names, sorted and de-duplicated.

    A string is a comma-separated list of ports and inclusive ranges (`a-b`); an int is one port;
    a list holds ints and strings of that grammar. An empty list names no port; an empty string
    is refused (it is almost always a mistake).
    """
    ports: set[int] = set()
    if isinstance(text, bool):
        raise ValueError(f"expected a port number or range, got {text!r}")
    if isinstance(text, int):
        ports.add(_port(text))
    elif isinstance(text, str):
        ports.update(_parse_text(text))
    elif isinstance(text, list | tuple):
        for item in text:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ValueError(
                    f"expected a port number or range in the list, got {_kind(item)}"
                )
            ports.update([_port(item)] if isinstance(item, int) else _parse_text(item))
    else:
        raise ValueError(
            "expected a port number, a range like 1-1024, a comma-separated list of them "
            f"or a list, got {_kind(text)}"
        )
    return tuple(sorted(ports))


def _parse_text(text: str) -> Iterable[int]:
    if not text.strip():
        raise ValueError("empty port specification")
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ValueError(f"empty item in port specification {text.strip()!r}")
        low, dash, high = item.partition("-")
        if not dash:
            yield _port(_number(item, item))
            continue
        first = _port(_number(low.strip(), item))
        last = _port(_number(high.strip(), item))
        if first > last:
            raise ValueError(f"port range {item!r} runs backwards (write {last}-{first})")
        yield from range(first, last + 1)


def _number(digits: str, item: str) -> int:
    if not _NUMBER.fullmatch(digits):
        raise ValueError(f"{item!r} is not a port number or a range like 1-1024")
    significant = digits.lstrip("0")
    if len(significant) > len(str(MAX_PORT)):
        shown = significant if len(significant) <= 12 else significant[:12] + "..."
        raise ValueError(f"port {shown} is out of range {MIN_PORT}-{MAX_PORT}")
    return int(digits)


def _port(number: int) -> int:
    if not MIN_PORT <= number <= MAX_PORT:
        raise ValueError(f"port {number} is out of range {MIN_PORT}-{MAX_PORT}")
    return number


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"
