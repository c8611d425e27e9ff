from django.apps import AppConfig


class TerraformConfig(AppConfig):
    name = "infra_tasks.terraform"
    label = "terraform"
    verbose_name = "Terraform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.terraform import jobs
        from infra_tasks.terraform.selectors import run_job_subject
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(
            (
                jobs.RUN_PLAN_EXECUTE.name,
                jobs.RUN_APPLY_EXECUTE.name,
                jobs.RUN_STATE_UNLOCK_EXECUTE.name,
            ),
            run_job_subject,
        )
        # A lost plan or apply: the run's own, finer heartbeat check decides, not the reconciler.
        job_lost_register(
            (jobs.RUN_PLAN_EXECUTE.name, jobs.RUN_APPLY_EXECUTE.name), _runs_check_lost
        )
        job_retry_declare(
            (jobs.RUN_APPLY_EXECUTE.name,),
            safe=False,
            refusal="An apply runs the plan it was approved with, once. Plan again instead: "
            "open the workspace and press Plan.",
        )
        job_retry_declare(
            (jobs.RUN_PLAN_EXECUTE.name,),
            safe=False,
            refusal="A plan belongs to its run. Start a new plan from the workspace instead.",
        )
        job_retry_declare(
            (jobs.RUN_STATE_UNLOCK_EXECUTE.name,),
            safe=False,
            refusal="Force-unlock again from the run's page, after checking who holds the lock.",
        )
        job_retry_declare(
            (
                jobs.RUN_STATE_LOCK_CHECK_EXECUTE.name,
                jobs.DRIFT_CHECK_REQUEST_ALL.name,
                jobs.RUNS_MARK_LOST.name,
            ),
            safe=True,
        )


def _runs_check_lost(*, task_id: str, reason: str) -> None:
    from infra_tasks.terraform.services.runs import run_job_ended_unstarted, runs_mark_lost

    # A job that never reached a worker has no heartbeat to judge: its run ends now.
    if run_job_ended_unstarted(task_id=task_id, reason=reason) is None:
        runs_mark_lost()
