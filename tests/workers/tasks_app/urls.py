from django.urls import path

from tests.workers.tasks_app import views

urlpatterns = [path("enqueue-add/", views.enqueue_add)]
