"""The README and docs/ render as meant and hold what they promise: every code fence is closed
before the next section, each command in their shell blocks names a make target, a file or a
management command that is really there, every relative link resolves, the README stays short,
and every setting project/settings.py reads from the environment is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


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


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_code_fence_is_closed_before_the_next_section(page: Path) -> None:
    open_at = None
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if line.startswith("```"):
            open_at = None if open_at else number
        elif open_at and line.startswith("#"):
            raise AssertionError(
                f"{page.name} line {number} ({line!r}) is inside the code block opened on line "
                f"{open_at}: that section renders as code"
            )
    assert open_at is None, f"the code block opened on {page.name} line {open_at} is never closed"


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


def commands(page: Path) -> list[str]:
    return [
        line.split("  #", 1)[0].strip()
        for block in shell_blocks(page.read_text())
        for line in block
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_readme_gives_the_two_commands_and_stays_short() -> None:
    assert {"make run", "make test"} <= set(commands(README))
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_in_the_shell_blocks_exists(page: Path) -> None:
    problems = [f"{line!r}: no {what}" for line in commands(page) if (what := missing(line))]
    assert not problems, f"{page.name} commands that do not exist:\n" + "\n".join(problems)


def anchors(page: Path) -> set[str]:
    """The fragment GitHub gives each heading of the page."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            fragment and linked.suffix == ".md" and fragment not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_every_setting_read_from_the_environment_is_documented() -> None:
    settings = (ROOT / "project" / "settings.py").read_text()
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", settings))
    assert len(names) > 50, "the pattern no longer finds the settings"
    docs = "\n".join(page.read_text() for page in PAGES[1:])
    undocumented = sorted(name for name in names if f"`{name}`" not in docs)
    assert not undocumented, f"settings no page of docs/ names: {undocumented}"
