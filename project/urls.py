from django.contrib import admin
from django.urls import include, path

from workers.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/", include("workers.urls")),
    path("healthz/", healthz, name="healthz"),
]

urlpatterns += [path("ops/infrastructure/", include("infra_tasks.dashboard.urls"))]
