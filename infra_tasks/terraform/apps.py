from django.apps import AppConfig


class TerraformConfig(AppConfig):
    name = "infra_tasks.terraform"
    label = "terraform"
    verbose_name = "Terraform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.terraform.selectors import run_job_subject
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(
            (
                "infra_tasks.terraform.tasks.terraform_plan",
                "infra_tasks.terraform.tasks.terraform_apply",
            ),
            run_job_subject,
        )
        # A lost plan or apply: the run's own, finer heartbeat check decides, not the reconciler.
        job_lost_register(
            (
                "infra_tasks.terraform.tasks.terraform_plan",
                "infra_tasks.terraform.tasks.terraform_apply",
            ),
            _runs_check_lost,
        )
        T = "infra_tasks.terraform.tasks."
        job_retry_declare(
            (f"{T}terraform_apply",),
            safe=False,
            refusal="An apply runs the plan it was approved with, once. Plan again instead: "
            "open the workspace and press Plan.",
        )
        job_retry_declare(
            (f"{T}terraform_plan",),
            safe=False,
            refusal="A plan belongs to its run. Start a new plan from the workspace instead.",
        )
        job_retry_declare(
            (f"{T}terraform_state_unlock",),
            safe=False,
            refusal="Force-unlock again from the run's page, after checking who holds the lock.",
        )
        job_retry_declare(
            (
                f"{T}terraform_state_lock_check",
                f"{T}terraform_drift_check_all",
                f"{T}terraform_runs_mark_lost",
            ),
            safe=True,
        )


def _runs_check_lost(*, task_id: str, reason: str) -> None:
    from infra_tasks.terraform.services import runs_mark_lost

    runs_mark_lost()
