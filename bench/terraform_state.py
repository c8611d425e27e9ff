"""Benchmark: what remote state costs a plan. `init` + `plan` of a 50-resource workspace with
its state in S3 (terraform's s3 backend with a lock file, against moto_server on loopback)
beside the same workspace with local state.

Each round runs the way a worker step does: a fresh copy of the configuration, `init`, then
`plan` of an up-to-date state of 50 resources (applied once beforehand). Local state is the
old way: the same directory every round, state and `.terraform/` kept on the worker's disk.

    .venv/bin/python bench/terraform_state.py [--resources 50] [--rounds 7]

Target: remote state adds a small constant (well under a second) to init + plan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "opsqueue-bench-terraform"


def configuration(resources: int, *, remote: bool) -> str:
    backend = 'terraform {\n  backend "s3" {}\n}\n' if remote else ""
    return backend + "".join(
        f'resource "terraform_data" "r{i}" {{\n  input = "value-{i}"\n}}\n'
        for i in range(resources)
    )


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from workers.devstack import free_port, wait_for_http

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="opsqueue-bench-state-"))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "TF_IN_AUTOMATION": "1",
        "TF_PLUGIN_CACHE_DIR": str(work / "plugin-cache"),
        "TERRAFORM_STATE_BUCKET": BUCKET,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "true",
    }
    os.environ.update(env)
    import django

    django.setup()
    import boto3
    from django.conf import settings

    from infra_tasks.terraform import cli, remote

    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_http(f"{endpoint}/moto-api/")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        (work / "plugin-cache").mkdir()
        binary = settings.TERRAFORM_BIN
        plan_file = Path("bench.tfplan")

        def plan_command() -> list[str]:
            return cli.plan_command(
                binary, plan_file=plan_file, destroy=False, lock_timeout=10, detailed_exitcode=True
            )

        def run_plan(directory: Path) -> float:
            started = time.monotonic()
            result = subprocess.run(plan_command(), cwd=directory, env=env, capture_output=True)
            if result.returncode != cli.PLAN_NO_CHANGES:
                raise SystemExit(f"expected no changes:\n{result.stdout.decode()[-2000:]}")
            return time.monotonic() - started

        source = work / "remote-source"
        source.mkdir()
        (source / "main.tf").write_text(configuration(args.resources, remote=True))
        backend = work / "backend.tfbackend"
        backend.write_text(remote.backend_config(remote.state_key("bench")))
        local = work / "local"
        local.mkdir()
        (local / "main.tf").write_text(configuration(args.resources, remote=False))

        # The state both plans start from: every resource already applied.
        for directory, init in (
            (source, cli.init_command(binary, backend_config=backend)),
            (local, cli.init_command(binary)),
        ):
            subprocess.run(init, cwd=directory, env=env, check=True, capture_output=True)
            subprocess.run(
                [binary, "apply", "-auto-approve", "-input=false"],
                cwd=directory,
                env=env,
                check=True,
                capture_output=True,
            )
        shutil.rmtree(source / ".terraform")

        figures: dict[str, dict[str, list[float]]] = {
            "remote": {"init": [], "plan": []},
            "local": {"init": [], "plan": []},
        }
        for n in range(1, args.rounds + 1):
            step = work / f"step-{n}"
            shutil.copytree(source, step)
            figures["remote"]["init"].append(
                timed(cli.init_command(binary, backend_config=backend), step, env)
            )
            figures["remote"]["plan"].append(run_plan(step))
            shutil.rmtree(step)
            figures["local"]["init"].append(timed(cli.init_command(binary), local, env))
            figures["local"]["plan"].append(run_plan(local))
            remote_total = figures["remote"]["init"][-1] + figures["remote"]["plan"][-1]
            local_total = figures["local"]["init"][-1] + figures["local"]["plan"][-1]
            print(f"round {n}: remote {remote_total:.2f} s, local {local_total:.2f} s")
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    def median(where: str, step: str) -> float:
        return statistics.median(figures[where][step])

    print(
        f"\ninit + plan of {args.resources} terraform_data resources, up to date, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"{'step':<22}{'S3 state (moto)':>18}{'local state':>14}{'difference':>13}")
    for name in ("init", "plan"):
        remote_s, local_s = median("remote", name), median("local", name)
        print(f"{name:<22}{remote_s:>16.2f} s{local_s:>12.2f} s{remote_s - local_s:>+11.2f} s")
    totals = {
        where: statistics.median(
            i + p for i, p in zip(figures[where]["init"], figures[where]["plan"], strict=True)
        )
        for where in figures
    }
    difference = totals["remote"] - totals["local"]
    print(
        f"{'init + plan':<22}{totals['remote']:>16.2f} s{totals['local']:>12.2f} s"
        f"{difference:>+11.2f} s   target: < +1 s"
    )


if __name__ == "__main__":
    main()
