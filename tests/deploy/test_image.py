"""The image definition: non-root, started through deploy/start, runtime packages only,
terraform at a build-argument version; and the settings it relies on."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from infra_tasks.terraform.configuration import collect, declared_backend
from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_the_image_runs_as_an_unprivileged_user_through_the_start_script() -> None:
    stage = dict(final_stage())
    assert stage["USER"].split(":")[0] not in {"root", "0"}
    assert stage["ENTRYPOINT"] == '["/app/deploy/start"]'
    assert stage["CMD"] == '["web"]'
    assert os.access(ROOT / "deploy" / "start", os.X_OK)


def test_terraform_comes_from_a_stage_pinned_by_a_build_argument() -> None:
    steps = instructions()
    assert ("FROM", "hashicorp/terraform:${TERRAFORM_VERSION} AS terraform") in steps
    assert any(k == "ARG" and v.startswith("TERRAFORM_VERSION=") for k, v in steps)
    assert ("COPY", "--from=terraform /bin/terraform /usr/local/bin/terraform") in final_stage()


def locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """requirements/<name>.txt as {package: (version, hashes)}."""
    text = re.sub(r"\\\n", " ", (ROOT / "requirements" / name).read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement, *options = line.split()
            package, version = requirement.split("==")
            hashes = [o.split("=", 1)[1] for o in options if o.startswith("--hash=")]
            pins[re.sub(r"[-_.]+", "-", package).lower()] = (version, hashes)
    return pins


def test_the_image_installs_runtime_requirements_without_the_development_tools() -> None:
    runs = [v for k, v in instructions() if k == "RUN"]
    assert any(
        "pip install --require-hashes -r /tmp/requirements/runtime.txt" in run for run in runs
    )
    assert ("COPY", "requirements/runtime.txt /tmp/requirements/runtime.txt") in instructions()
    runtime = locked("runtime.txt")
    assert {"gunicorn", "celery", "flower", "psycopg", "pycurl", "whitenoise"} <= set(runtime)
    assert not {"pytest", "moto", "playwright", "mypy", "ruff"} & set(runtime)


def test_the_locks_pin_every_package_with_hashes_and_development_keeps_the_runtime_pins() -> None:
    runtime, dev = locked("runtime.txt"), locked("dev.txt")
    for lock in (runtime, dev):
        assert lock and all(re.fullmatch(r"[\w.+!]+", version) for version, _ in lock.values())
        assert all(hashes for _, hashes in lock.values())
    assert {name: pin[0] for name, pin in dev.items() if name in runtime} == {
        name: pin[0] for name, pin in runtime.items()
    }
    assert set(runtime) < set(dev) and {"pytest", "moto", "playwright", "mypy", "ruff"} <= set(dev)
    # Celery and kombu exactly: workers/ adapts private parts of both.
    wanted = (ROOT / "requirements" / "runtime.in").read_text().split()
    assert {"celery[sqs,solar]==5.7.0", "kombu==5.7.0"} <= set(wanted)


def test_static_files_are_collected_at_build_time_not_at_start() -> None:
    runs = [v for k, v in final_stage() if k == "RUN"]
    assert any("manage.py collectstatic --noinput" in run for run in runs)
    assert "collectstatic" not in (ROOT / "deploy" / "start").read_text()


def test_a_separately_injected_database_password_overrides_the_urls() -> None:
    script = "from django.conf import settings; print(settings.DATABASES['default']['PASSWORD'])"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": "postgres://opsqueue@db.internal:5432/opsqueue",
        "DATABASE_PASSWORD": "from-secrets-manager",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.strip() == "from-secrets-manager", result.stderr


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, value in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(value):
                name, _, setting = pair.partition("=")
                env[name] = setting
    return env


def test_terraform_configurations_are_built_in_at_terraform_root_from_a_build_argument() -> None:
    stage = final_stage()
    (argument,) = [v for k, v in stage if k == "ARG" and v.startswith("TERRAFORM_CONFIGURATIONS=")]
    default = ROOT / argument.split("=", 1)[1]
    root = final_env()["TERRAFORM_ROOT"]
    assert ("COPY", f"${{TERRAFORM_CONFIGURATIONS}} {root}") in stage
    # The default ships the repository's configurations, each keeping its state in S3.
    ignored = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert default.is_dir() and default.name not in ignored
    workspaces = [d for d in default.iterdir() if d.is_dir()]
    assert workspaces
    for workspace in workspaces:
        assert declared_backend(collect(workspace)) == "s3", workspace


def test_terraform_work_and_provider_cache_directories_are_private_to_the_app_user() -> None:
    env = final_env()
    runs = " ".join(v for k, v in final_stage() if k == "RUN")
    made = re.search(r"install -d -o opsqueue -g opsqueue -m 0700\s+([^&]+)", runs)
    assert made is not None
    private = made.group(1).split()
    assert env["TERRAFORM_WORK_DIR"] in private
    assert env["TERRAFORM_PLUGIN_CACHE_DIR"] in private
    assert env["TERRAFORM_ROOT"] not in private, "configurations are read-only for the app"
