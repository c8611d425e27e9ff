"""A workspace's configuration as data: its files, their digest, the bundle a run is pinned to,
and the backend it declares. Pure: no Django.

A plan packs the configuration directory into a bundle (a gzipped tar, byte-for-byte the same
for the same files, so it can be stored under its own hash); the apply unpacks exactly that
bundle on whichever worker takes it. The digest names the configuration ("abc123") so a run
can say whether the workspace still has the configuration it was planned with.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ApplicationError

# Bundles hold configuration, not data: anything bigger is almost certainly a mistake.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
LOCK_FILE = ".terraform.lock.hcl"
# What terraform and people running it by hand leave in a directory; never configuration.
_SKIPPED_DIRECTORIES = frozenset({".terraform", "terraform.tfstate.d", ".git"})
_SKIPPED_FILES = re.compile(r"(\.tfstate|\.tfstate\.backup|\.tfstate\.lock\.info|\.tfplan)$")


class ConfigurationError(ApplicationError, ValueError):
    """A configuration that cannot be bundled; the message says why."""


@dataclass(frozen=True)
class Entry:
    path: str  # POSIX, relative to the configuration directory
    data: bytes  # file content, or the target of a symlink
    executable: bool = False
    symlink: bool = False


def collect(directory: Path) -> list[Entry]:
    """The configuration's files, sorted, without terraform's working data (`.terraform/`,
    local state, saved plans). Symlinks are kept as links and must stay inside."""
    root = directory.resolve()
    entries: list[Entry] = []
    size = 0
    for path in _walk(root):
        relative = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            if not path.resolve().is_relative_to(root):
                raise ConfigurationError(f"{relative} links outside the configuration ({target})")
            entries.append(Entry(relative, target.encode(), symlink=True))
        elif stat.S_ISREG(info.st_mode):
            size += info.st_size
            if size > MAX_BUNDLE_BYTES:
                raise ConfigurationError(
                    f"the configuration is larger than {MAX_BUNDLE_BYTES // 2**20} MiB"
                )
            executable = bool(info.st_mode & stat.S_IXUSR)
            entries.append(Entry(relative, path.read_bytes(), executable=executable))
        else:
            raise ConfigurationError(f"{relative} is neither a file, a directory nor a link")
    return sorted(entries, key=lambda entry: entry.path)


def _walk(root: Path) -> Iterator[Path]:
    for current, directories, files in os.walk(root):
        base = Path(current)
        kept = []
        for name in directories:
            if (base / name).is_symlink():
                files.append(name)  # a link to a directory is bundled as a link
            elif name not in _SKIPPED_DIRECTORIES:
                kept.append(name)
        directories[:] = kept
        for name in files:
            if not _SKIPPED_FILES.search(name):
                yield base / name


def digest(entries: list[Entry]) -> str:
    """SHA-256 naming a configuration: paths, kinds, executable bits and contents."""
    summary = hashlib.sha256()
    for entry in entries:
        kind = "link" if entry.symlink else ("exec" if entry.executable else "file")
        content = hashlib.sha256(entry.data).hexdigest()
        summary.update(f"{entry.path}\0{kind}\0{content}\n".encode())
    return summary.hexdigest()


def pack(entries: list[Entry]) -> bytes:
    """A gzipped tar of the entries; the same entries always give the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mtime = 0
            if entry.symlink:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.data.decode()
                info.mode = 0o777
                archive.addfile(info)
            else:
                info.size = len(entry.data)
                info.mode = 0o755 if entry.executable else 0o644
                archive.addfile(info, io.BytesIO(entry.data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", filename="", mtime=0) as stream:
        stream.write(raw.getvalue())
    return compressed.getvalue()


def unpack(bundle: bytes, destination: Path) -> None:
    """Extract a bundle; members that would land outside `destination` are refused."""
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as archive:
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigurationError(f"the configuration bundle cannot be unpacked: {exc}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(digest_hex: str) -> str:
    """The first 12 hex digits: how the admin names a configuration."""
    return digest_hex[:12]


# --- The backend a root module declares ------------------------------------------------------


def declared_backend(entries: list[Entry]) -> str | None:
    """The backend type the root module declares (`"s3"`, `"gcs"`, `"cloud"` for HCP
    Terraform's block), or None. Only top-level files count: modules cannot declare one."""
    for entry in entries:
        if "/" in entry.path or entry.symlink:
            continue
        text = entry.data.decode("utf-8", "replace")
        if entry.path.endswith(".tf"):
            found = _backend_in_hcl(text)
        elif entry.path.endswith(".tf.json"):
            found = _backend_in_json(text)
        else:
            continue
        if found:
            return found
    return None


_TOKENS = re.compile(
    r"""
    (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
    | (?P<heredoc><<-?\s*(?P<tag>[A-Za-z_][A-Za-z0-9_]*)\n.*?\n\s*(?P=tag)\b)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<open>\{)
    | (?P<close>\})
    | (?P<newline>\n)
    """,
    re.VERBOSE | re.DOTALL,
)


def _backend_in_hcl(text: str) -> str | None:
    """`backend "NAME" {` or `cloud {` directly inside a top-level `terraform` block.

    A tokenizer, not a full HCL parser: comments, strings and heredocs are skipped so that a
    commented-out block or a string mentioning a backend is not taken for one. A block's
    header is the tokens on its line before `{`.
    """
    depth = 0
    terraform_depth: int | None = None
    header: list[tuple[str, str]] = []
    for match in _TOKENS.finditer(text):
        kind = match.lastgroup
        if kind in ("comment", "heredoc", None):
            continue
        if kind == "newline":
            header = []
        elif kind == "open":
            if depth == 0 and header == [("word", "terraform")]:
                terraform_depth = 1
            elif terraform_depth == depth == 1:
                if [kind for kind, _ in header] == ["word", "string"] and header[0][1] == "backend":
                    return str(json.loads(header[1][1]))
                if header == [("word", "cloud")]:
                    return "cloud"
            depth += 1
            header = []
        elif kind == "close":
            depth = max(depth - 1, 0)
            if terraform_depth is not None and depth < terraform_depth:
                terraform_depth = None
            header = []
        else:
            header.append((kind, match.group(kind)))
    return None


def _backend_in_json(text: str) -> str | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    blocks = document.get("terraform", []) if isinstance(document, dict) else []
    for block in blocks if isinstance(blocks, list) else [blocks]:
        if not isinstance(block, dict):
            continue
        backend = block.get("backend")
        if isinstance(backend, dict) and backend:
            return str(next(iter(backend)))
        if isinstance(backend, list) and backend and isinstance(backend[0], dict):
            return str(next(iter(backend[0])))
        if "cloud" in block:
            return "cloud"
    return None
