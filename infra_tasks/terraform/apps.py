from django.apps import AppConfig


class TerraformConfig(AppConfig):
    name = "infra_tasks.terraform"
    label = "terraform"
    verbose_name = "Terraform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.terraform.selectors import run_job_subject
        from workers.subjects import job_subject_register

        job_subject_register(
            (
                "infra_tasks.terraform.tasks.terraform_plan",
                "infra_tasks.terraform.tasks.terraform_apply",
            ),
            run_job_subject,
        )
