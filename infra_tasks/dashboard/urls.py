from django.urls import path

from infra_tasks.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.infrastructure_dashboard, name="infrastructure"),
]
