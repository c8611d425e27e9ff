"""Any infra worker takes any step of any run: workers with nothing on a shared disk (their own
work directory, provider cache and copy of TERRAFORM_ROOT, as two ECS tasks of the image
have), real terraform, state and plans in the local endpoint's S3."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from infra_tasks.terraform import remote
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services.runs import run_approve, run_request
from tests.infra_tasks.terraform.conftest import s3_objects
from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.enqueue import Requester

pytestmark = pytest.mark.django_db(transaction=True)


class Machine:
    """A worker's own disk: the image's configurations, a work directory, a provider cache,
    a home and a temporary directory (terraform's own ~/.terraform.d and temporary files)."""

    def __init__(self, path: Path, workspace: TerraformWorkspace) -> None:
        self.path = path
        root = path / "srv-terraform"
        shutil.copytree(
            Path(settings.TERRAFORM_ROOT) / workspace.directory, root / workspace.directory
        )
        for private in ("home", "tmp"):
            (path / private).mkdir()
        self.env = {
            "TERRAFORM_ROOT": str(root),
            "TERRAFORM_WORK_DIR": str(path / "work"),
            "TERRAFORM_PLUGIN_CACHE_DIR": str(path / "plugin-cache"),
            "HOME": str(path / "home"),
            "TMPDIR": str(path / "tmp"),
        }

    def wipe(self) -> None:
        shutil.rmtree(self.path)


@pytest.fixture
def cluster(
    worker_env: dict[str, str], run_dir: Path, tmp_path: Path, aws: AwsEndpoint
) -> Iterator[Callable[[str, TerraformWorkspace], tuple[Machine, WorkerProcess]]]:
    """Starts infra workers on queues of their own, each on a machine of its own."""
    prefix = new_queue_prefix()
    started: list[WorkerProcess] = []

    def start(name: str, workspace: TerraformWorkspace) -> tuple[Machine, WorkerProcess]:
        machine = Machine(tmp_path / name, workspace)
        worker = WorkerProcess(
            env={**worker_env, "SQS_QUEUE_PREFIX": prefix, **machine.env},
            queues=["infra"],
            log_dir=run_dir,
            name=f"{name}-{prefix[1:-1]}",
        )
        started.append(worker)
        return machine, worker

    with publishing_to(prefix):
        yield start
    for worker in started:
        worker.stop()


def wait_state(run: TerraformRun, *states: RunState) -> TerraformRun:
    def reached() -> bool:
        run.refresh_from_db()
        return run.state in states

    wait_until(reached, timeout=120, message=f"run #{run.pk} to be {'/'.join(states)}")
    return run


def plan(workspace: TerraformWorkspace, by: User) -> TerraformRun:
    return run_request(workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(by))


def resources_in_state(aws: AwsEndpoint, workspace: TerraformWorkspace) -> set[str]:
    key = remote.state_key(workspace.name)
    state = s3_objects(aws, key).get(key)
    return {r["name"] for r in json.loads(state)["resources"]} if state else set()


def test_a_plan_or_destroy_made_on_one_worker_is_applied_by_another_that_shares_no_disk(
    cluster: Callable[[str, TerraformWorkspace], tuple[Machine, WorkerProcess]],
    aws: AwsEndpoint,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    bob = get_user_model().objects.create_user("bob", is_staff=True)
    workspace = make_workspace()

    machine_a, worker_a = cluster("a", workspace)
    run = wait_state(plan(workspace, alice), RunState.PLANNED, RunState.FAILED)
    assert run.state == RunState.PLANNED, run.message
    assert run.worker == worker_a.hostname
    # Worker A goes away with everything on its disk.
    worker_a.stop()
    machine_a.wipe()

    machine_b, worker_b = cluster("b", workspace)
    run_approve(run=run, user=bob)
    wait_state(run, RunState.APPLIED, RunState.FAILED)
    assert run.state == RunState.APPLIED, run.message
    assert run.worker == worker_b.hostname
    assert resources_in_state(aws, workspace) == {"first", "second", "slow"}

    again = wait_state(plan(workspace, alice), RunState.NO_CHANGES, RunState.PLANNED)
    assert again.state == RunState.NO_CHANGES, again.message

    # The other way round, for a destroy: planned on B, applied on a fresh A once B is gone.
    destroy = run_request(
        workspace=workspace, kind=RunKind.DESTROY, requester=Requester.for_user(alice)
    )
    wait_state(destroy, RunState.PLANNED, RunState.FAILED)
    assert destroy.state == RunState.PLANNED, destroy.message
    assert destroy.worker == worker_b.hostname
    worker_b.stop()
    machine_b.wipe()

    _fresh_a, fresh_a = cluster("a-again", workspace)
    run_approve(run=destroy, user=bob)
    wait_state(destroy, RunState.APPLIED, RunState.FAILED)
    assert destroy.state == RunState.APPLIED, destroy.message
    assert destroy.worker == fresh_a.hostname
    assert resources_in_state(aws, workspace) == set()


def test_the_state_survives_losing_every_local_directory_of_the_worker(
    cluster: Callable[[str, TerraformWorkspace], tuple[Machine, WorkerProcess]],
    aws: AwsEndpoint,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    workspace = make_workspace()
    machine, worker = cluster("first", workspace)
    run = wait_state(plan(workspace, alice), RunState.PLANNED, RunState.FAILED)
    run_approve(run=run, user=alice)
    wait_state(run, RunState.APPLIED, RunState.FAILED)
    assert run.state == RunState.APPLIED, run.message

    # A replaced task: a new machine from the same image, nothing kept from the old one.
    worker.stop()
    machine.wipe()
    _replacement, _worker = cluster("replacement", workspace)

    again = wait_state(plan(workspace, alice), RunState.NO_CHANGES, RunState.PLANNED)
    assert again.state == RunState.NO_CHANGES, again.message
    assert resources_in_state(aws, workspace) == {"first", "second", "slow"}
