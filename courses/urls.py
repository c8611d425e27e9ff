from django.urls import path

from courses import views

app_name = "courses"

urlpatterns = [
    path("courses/", views.course_list, name="course-list"),
    path("courses/<slug:slug>/", views.course_detail, name="course-detail"),
    # Last: whatever else is asked under the API, /api/ itself too, gets a JSON 404, not an
    # HTML page.
    path("", views.not_found, name="root"),
    path("<path:path>", views.not_found, name="not-found"),
]
