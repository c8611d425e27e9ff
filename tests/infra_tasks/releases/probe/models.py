from django.db import models


class Switch(models.Model):
    name = models.CharField(max_length=32, unique=True)

    def __str__(self) -> str:
        return self.name


class Widget(models.Model):
    name = models.CharField(max_length=50)
    colour = models.CharField(max_length=20, blank=True, db_default="")

    def __str__(self) -> str:
        return self.name
