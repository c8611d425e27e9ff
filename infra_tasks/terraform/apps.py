from django.apps import AppConfig


class TerraformConfig(AppConfig):
    name = "infra_tasks.terraform"
    label = "terraform"
    verbose_name = "Terraform"
    default_auto_field = "django.db.models.BigAutoField"
