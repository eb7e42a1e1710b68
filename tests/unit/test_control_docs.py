"""docs/CONTROL.md tells operators what to type: every `fleet-twin ...` command it shows exists,
with the options it shows (checked against the CLI's own command tree, nothing run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer

from streams.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONTROL.md"
_CALL = re.compile(r"(?:^|`|\$ )(fleet-twin [a-z][a-z-]*(?:[ \t][^`\n]*)?)(?=`|$)", re.M)
"""A call at the start of a line (after `$ ` if shown as a prompt) or in inline code; prose such as
"fleet-twin audit: ..." in a diagram is not a call."""


def shown_commands(text: str) -> list[str]:
    """Each `fleet-twin ...` call the page shows, in code blocks or inline code, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    return [m.group(1).split(" #")[0].strip() for m in _CALL.finditer(text)]


def problems(call: str, root: Any) -> list[str]:
    """What in `call` the CLI does not have: an unknown (sub)command or option."""
    try:
        words = shlex.split(call)[1:]
    except ValueError as exc:
        return [f"{call}: {exc}"]
    command, path = root, ["fleet-twin"]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            if words[0].isupper() or words[0].startswith(("<", "[")):
                break  # a placeholder of an argument
            return [f"{call}: no command '{' '.join([*path, words[0]])}'"]
        command, path, words = sub, [*path, words[0]], words[1:]
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        return [f"{call}: '{' '.join(path)}' needs a subcommand"] if len(path) > 1 and not words else []
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    return [f"{call}: '{' '.join(path)}' has no option {w.split('=')[0]}"
            for w in words if w.startswith("--") and w.split("=")[0] not in known]


def test_every_command_the_control_doc_shows_exists() -> None:
    calls = shown_commands(DOC.read_text())
    assert calls, "docs/CONTROL.md shows no fleet-twin command"
    root = typer.main.get_command(app)
    assert [p for call in calls for p in problems(call, root)] == []


def test_a_command_the_cli_lacks_is_caught() -> None:
    root = typer.main.get_command(app)
    assert problems("fleet-twin no-such-command", root)
    assert problems("fleet-twin twin-at r-1 now --no-such-option 3", root)
    assert not problems("fleet-twin twin-at r-1 now --from -15m", root)
