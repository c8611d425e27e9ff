"""The README renders as meant and its commands exist: every code fence is closed before the
next section, and each command in its shell blocks names a make target, a file or a
management command that is really there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def shell_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = [] if line.strip() in ("```sh", "```bash", "```shell") else ["<not sh>"]
            else:
                if current[:1] != ["<not sh>"]:
                    blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_every_code_fence_is_closed_before_the_next_section() -> None:
    open_at = None
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            open_at = None if open_at else number
        elif open_at and line.startswith("#"):
            raise AssertionError(
                f"README line {number} ({line!r}) is inside the code block opened on line "
                f"{open_at}: that section renders as code"
            )
    assert open_at is None, f"the code block opened on README line {open_at} is never closed"


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*):", (ROOT / "Makefile").read_text(), re.M))


def management_commands() -> set[str]:
    return {
        path.stem for path in ROOT.glob("**/management/commands/*.py") if ".venv" not in path.parts
    }


def missing(command: str) -> str | None:
    """What the command names that does not exist, or None."""
    words = shlex.split(command)
    if words[0] == "make":
        return None if words[1] in make_targets() else f"make target {words[1]!r}"
    if words[0].endswith(("python", "python3")):
        script = words[1]
        if not (ROOT / script).is_file():
            return f"file {script!r}"
        if script == "manage.py" and words[2] not in management_commands():
            return f"management command {words[2]!r}"
        return None
    return None if (ROOT / words[0]).exists() else f"file {words[0]!r}"


def test_every_command_in_the_shell_blocks_exists() -> None:
    blocks = shell_blocks(README.read_text())
    commands = [
        line.split("  #", 1)[0].strip()
        for block in blocks
        for line in block
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make run" in commands and "make test" in commands
    problems = [f"{command!r}: no {what}" for command in commands if (what := missing(command))]
    assert not problems, "README commands that do not exist:\n" + "\n".join(problems)
