from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "tests.infra_tasks.releases.probe"
    label = "release_probe"
    default_auto_field = "django.db.models.BigAutoField"
