from django.urls import path

from workers import operations_views, views

app_name = "workers"

urlpatterns = [
    path("jobs/diagnostic/", views.diagnostic_trigger, name="diagnostic-trigger"),
    path("jobs/<str:task_id>/", views.job_detail, name="job-detail"),
    path("jobs/<str:task_id>/retry/", views.job_retry, name="job-retry"),
    path("jobs/<str:task_id>/discard/", views.job_discard, name="job-discard"),
    path("jobs/<str:task_id>/log/", views.job_log, name="job-log"),
    path("jobs/<str:task_id>/log.txt", views.job_log_download, name="job-log-download"),
    path("recurring/<int:periodic_task_id>/run/", views.recurring_run_now, name="recurring-run"),
    path("operations/", operations_views.operations_page, name="operations"),
    path(
        "operations/dead-letters/<str:queue>/<str:message_id>/<str:action>/",
        operations_views.dead_letter_act,
        name="dead-letter-act",
    ),
    path("metrics.json", operations_views.metrics_json, name="metrics"),
    path(
        "queues/<str:queue>/pause/",
        operations_views.queue_pause_toggle,
        {"pause": True},
        name="queue-pause",
    ),
    path(
        "queues/<str:queue>/resume/",
        operations_views.queue_pause_toggle,
        {"pause": False},
        name="queue-resume",
    ),
]
