from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """A test app whose tasks.py holds Django `@task` functions, as any app's would."""

    name = "tests.workers.tasks_app"
    label = "tasks_app"
