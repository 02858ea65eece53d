"""Shell completion (click's own, docs/outputs.md): command and option names, and the values
the probe knows: built-in profile ids (beside YAML files) and check ids.

`iotprobe completion bash|zsh|fish` prints the script a shell sources once; on each TAB the
shell runs `iotprobe` again with `_IOTPROBE_COMPLETE` set and click answers from the functions
below, so completions always match the installed version.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import click
from click.shell_completion import CompletionItem, get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_IOTPROBE_COMPLETE"


def complete_profiles(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """The built-in profile ids that start with `incomplete`; when none does, the shell's own
    file names (a user profile is a YAML path). Not both: click's bash script drops the ids
    when a file completion follows them."""
    from probe.profile_loader import builtin_profile_ids

    ids = [CompletionItem(pid) for pid in builtin_profile_ids() if pid.startswith(incomplete)]
    return ids or [CompletionItem(incomplete, type="file")]


def complete_checks(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    """The check ids of the catalogue that start with `incomplete` (or match it, when it is a
    glob such as `tls.*`), each with its title as help."""
    from probe.checks.catalogue import catalogue

    checks = catalogue()
    matches = [cid for cid in sorted(checks) if cid.startswith(incomplete)
               or (any(c in incomplete for c in "*?[") and fnmatchcase(cid, incomplete))]
    return [CompletionItem(cid, help=checks[cid].title) for cid in matches]


def completion_script(cli: click.Command, shell: str) -> str:
    """The script that makes `shell` complete `iotprobe` (click's, for this command line)."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"no completion for {shell}", param_hint="SHELL")
    return cls(cli, {}, "iotprobe", COMPLETE_VAR).source()
