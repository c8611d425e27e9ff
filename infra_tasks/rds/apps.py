from django.apps import AppConfig


class RdsConfig(AppConfig):
    name = "infra_tasks.rds"
    label = "rds"
    verbose_name = "Managed databases"
    default_auto_field = "django.db.models.BigAutoField"
