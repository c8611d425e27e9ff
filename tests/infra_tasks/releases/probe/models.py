from __future__ import annotations

from django.db import models


class Switch(models.Model):
    name = models.CharField(max_length=32, unique=True)

    # Spelled out: type checkers load settings without the test-only apps, so the
    # django-stubs plugin never adds the default manager to this model.
    objects: models.Manager[Switch] = models.Manager()

    def __str__(self) -> str:
        return self.name


class Widget(models.Model):
    name = models.CharField(max_length=50)
    colour = models.CharField(max_length=20, blank=True, db_default="")

    def __str__(self) -> str:
        return self.name
