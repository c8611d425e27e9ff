from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "infra_tasks.dashboard"
    label = "dashboard"
    verbose_name = "Infrastructure dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.dashboard.jobs import ECS_SERVICES_REFRESH
        from workers.retries import job_retry_declare

        # Former name too: a job queued before the rename keeps its rule.
        job_retry_declare((ECS_SERVICES_REFRESH.name,), safe=True)
