"""Write the option tables of docs/cli.md from the command line itself (click's introspection).

    python scripts/cli_docs.py            # rewrites the generated blocks of docs/cli.md
    python scripts/cli_docs.py --check    # exit 1 if they are stale

Each command (`iotprobe scan`, `iotprobe lab up`, ...) has a block named after it; the prose
around the blocks is written by hand. A command without a block, or a block without a command,
makes the generator fail until docs/cli.md is given the markers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

# docgen beside this file, and this checkout's probe before any installed one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docgen import REPO, main

DOC = REPO / "docs" / "cli.md"


def commands(ctx: click.Context) -> Iterator[click.Context]:
    """The context of the command of `ctx` and of every command under it, in help order."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from commands(click.Context(sub, info_name=name, parent=ctx))


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: float) -> str:
    """1000000 as "1,000,000", 0.05 as "0.05"."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _kind(param: click.Parameter, ctx: click.Context) -> str:
    """What the value is: its choices, its range, or click's name for its type."""
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(kind, click.Choice):
        return " \\| ".join(f"`{choice}`" for choice in kind.choices)
    if isinstance(kind, click.IntRange | click.FloatRange):
        number = "integer" if isinstance(kind, click.IntRange) else "number"
        low = "" if kind.min is None else _number(kind.min)
        high = "" if kind.max is None else _number(kind.max)
        return f"{number} ≥ {low}" if not high else f"{number}, {low} to {high}"
    if isinstance(kind, click.Path):
        return "directory" if not kind.file_okay else "file" if not kind.dir_okay else "path"
    return {"INTEGER": "integer", "FLOAT": "number", "TEXT": "text"}.get(
        kind.get_metavar(param, ctx) or kind.name.upper(), kind.name)


def _default(param: click.Parameter) -> str:
    default = param.to_info_dict()["default"]  # click's public view: None when there is none
    if default is None or default is False or default == () or callable(default):
        return ""
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


def _names(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Argument):
        return f"`{param.make_metavar(ctx)}`"
    return ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])


def _notes(param: click.Parameter) -> str:
    notes = []
    if param.required:
        notes.append("required")
    if param.multiple or (isinstance(param, click.Argument) and param.nargs == -1):
        notes.append("repeatable")
    if isinstance(param, click.Option) and param.envvar:
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
        notes.append("env " + ", ".join(f"`${name}`" for name in envvars))
    return "; ".join(notes)


def table(command: click.Command, ctx: click.Context) -> str:
    """The Markdown table of one command's arguments and options (help excluded)."""
    rows = ["| option | value | default | notes | meaning |", "|---|---|---|---|---|"]
    help_option = command.get_help_option(ctx)
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or param is help_option:
            continue
        meaning = getattr(param, "help", None) or ""
        rows.append("| " + " | ".join((
            _names(param, ctx), _kind(param, ctx), _default(param), _notes(param),
            _cell(meaning))) + " |")
    return "\n".join(rows)


def usage(command: click.Command, ctx: click.Context) -> str:
    summary = (command.help or "").split("\n\n")[0]
    pieces = command.collect_usage_pieces(ctx)
    line = " ".join([ctx.command_path, *pieces])
    return f"```\n{line}\n```\n\n{_cell(summary)}"


def render() -> dict[str, str]:
    """The generated block of every command: its usage line, summary and option table."""
    from probe.cli import cli

    blocks = {}
    for ctx in commands(click.Context(cli, info_name="iotprobe")):
        command = ctx.command
        body = usage(command, ctx)
        if isinstance(command, click.Group):
            subs = ", ".join(f"`{sub}`" for sub in command.list_commands(ctx))
            body += f"\n\nCommands: {subs}."
        blocks[ctx.command_path] = body + "\n\n" + table(command, ctx)
    return blocks


if __name__ == "__main__":
    sys.exit(main(DOC, render, "Write the option tables of docs/cli.md."))
