"""Configurations as data: what a bundle holds, its digest, its bytes, safe unpacking, and the
backend a root module declares. Pure: no database, no terraform."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from infra_tasks.terraform.configuration import (
    LOCK_FILE,
    ConfigurationError,
    Entry,
    collect,
    declared_backend,
    digest,
    pack,
    unpack,
)


def make_configuration(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "main.tf").write_text('terraform {\n  backend "s3" {}\n}\n')
    (path / LOCK_FILE).write_text("# provider pins\n")
    (path / "scripts").mkdir()
    (path / "scripts" / "deploy.sh").write_text("#!/bin/sh\necho deploy\n")
    (path / "scripts" / "deploy.sh").chmod(0o755)
    # What terraform and people running it by hand leave behind.
    (path / ".terraform" / "providers").mkdir(parents=True)
    (path / ".terraform" / "terraform.tfstate").write_text("{}")
    (path / "terraform.tfstate").write_text("{}")
    (path / "terraform.tfstate.backup").write_text("{}")
    (path / "run.tfplan").write_bytes(b"PK")
    return path


def test_collect_keeps_the_configuration_and_its_lock_file_and_drops_working_data(
    tmp_path: Path,
) -> None:
    entries = collect(make_configuration(tmp_path / "ws"))
    assert [e.path for e in entries] == [LOCK_FILE, "main.tf", "scripts/deploy.sh"]
    assert [e.executable for e in entries] == [False, False, True]


def test_the_digest_names_the_content_wherever_it_lies_and_changes_with_it(
    tmp_path: Path,
) -> None:
    one = make_configuration(tmp_path / "one")
    two = make_configuration(tmp_path / "two")
    assert digest(collect(one)) == digest(collect(two))
    (two / "main.tf").write_text((two / "main.tf").read_text() + "# edited\n")
    assert digest(collect(one)) != digest(collect(two))
    (one / "scripts" / "deploy.sh").chmod(0o644)
    assert digest(collect(one)) != digest(collect(make_configuration(tmp_path / "three")))


def test_a_bundle_is_byte_for_byte_the_same_for_the_same_files(tmp_path: Path) -> None:
    one = make_configuration(tmp_path / "one")
    two = make_configuration(tmp_path / "two")
    os.utime(two / "main.tf", (0, 1_000_000))
    assert pack(collect(one)) == pack(collect(two))


def test_unpacking_a_bundle_gives_back_the_files_and_their_modes(tmp_path: Path) -> None:
    source = make_configuration(tmp_path / "source")
    target = tmp_path / "target"
    unpack(pack(collect(source)), target)
    assert collect(target) == collect(source)
    assert os.access(target / "scripts" / "deploy.sh", os.X_OK)


def test_links_inside_are_kept_and_links_outside_are_refused(tmp_path: Path) -> None:
    source = make_configuration(tmp_path / "source")
    (source / "current.tf").symlink_to("main.tf")
    entries = collect(source)
    assert Entry("current.tf", b"main.tf", symlink=True) in entries
    unpack(pack(entries), tmp_path / "target")
    assert (tmp_path / "target" / "current.tf").read_text() == (source / "main.tf").read_text()

    (source / "secrets.tf").symlink_to("/etc/passwd")
    with pytest.raises(ConfigurationError, match="links outside the configuration"):
        collect(source)


def test_a_bundle_with_a_member_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        info = tarfile.TarInfo("../escaped.tf")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ConfigurationError, match="cannot be unpacked"):
        unpack(raw.getvalue(), tmp_path / "target")
    assert not (tmp_path / "escaped.tf").exists()


def tf(text: str, name: str = "main.tf") -> list[Entry]:
    return [Entry(name, text.encode())]


@pytest.mark.parametrize(
    ("text", "backend"),
    [
        ('terraform {\n  backend "s3" {}\n}\n', "s3"),
        (
            'terraform {\n  required_version = ">= 1.6"\n  backend "gcs" {\n'
            '    bucket = "b"\n  }\n}\n',
            "gcs",
        ),
        ('terraform {\n  cloud {\n    organization = "acme"\n  }\n}\n', "cloud"),
        ('# terraform {\n#   backend "s3" {}\n# }\nresource "terraform_data" "a" {}\n', None),
        ('/* terraform {\n  backend "local" {}\n} */\n', None),
        ('locals {\n  note = "terraform { backend \\"s3\\" {} }"\n}\n', None),
        ('resource "x" "y" {\n  backend "s3" {}\n}\n', None),
        ('terraform {\n  required_providers {\n    backend = "x"\n  }\n}\n', None),
        ('variable "v" {\n  default = <<EOT\nterraform {\n  backend "s3" {}\n}\nEOT\n}\n', None),
        ("", None),
    ],
    ids=[
        "s3",
        "gcs after attributes",
        "cloud block",
        "commented out",
        "block comment",
        "inside a string",
        "not in a terraform block",
        "attribute named backend",
        "inside a heredoc",
        "empty",
    ],
)
def test_declared_backend_reads_the_terraform_block(text: str, backend: str | None) -> None:
    assert declared_backend(tf(text)) == backend


def test_declared_backend_reads_json_configurations_and_ignores_modules() -> None:
    assert declared_backend(tf('{"terraform": {"backend": {"s3": {}}}}', "main.tf.json")) == "s3"
    assert declared_backend(tf('terraform {\n  backend "s3" {}\n}\n', "modules/x/main.tf")) is None
