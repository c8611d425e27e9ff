from django.apps import AppConfig


class MediaPipelineConfig(AppConfig):
    name = "media_pipeline"
    label = "media_pipeline"
    verbose_name = "Media pipeline"
    default_auto_field = "django.db.models.BigAutoField"
