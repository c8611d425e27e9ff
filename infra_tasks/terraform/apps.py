from django.apps import AppConfig


class TerraformConfig(AppConfig):
    name = "infra_tasks.terraform"
    label = "terraform"
    verbose_name = "Terraform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.terraform.selectors import run_job_subject
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(
            (
                "infra_tasks.terraform.tasks.terraform_plan",
                "infra_tasks.terraform.tasks.terraform_apply",
            ),
            run_job_subject,
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
