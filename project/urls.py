from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from media_pipeline.storage import serve_media
from workers.views import favicon, healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/infrastructure/", include("infra_tasks.dashboard.urls")),
    path("ops/", include("workers.urls")),
    path("healthz/", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("api/", include("courses.urls")),
]
# Development only (empty unless DEBUG): local media, e.g. cover variants in the admin.
urlpatterns += static(settings.MEDIA_URL, view=serve_media, document_root=settings.MEDIA_ROOT)

handler403 = "project.errors.permission_denied"
handler500 = "project.errors.server_error"
