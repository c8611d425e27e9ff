from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"
