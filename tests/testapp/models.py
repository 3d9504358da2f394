from __future__ import annotations

from django.conf import settings
from django.db import models


class Charge(models.Model):
    """The business row an idempotent view writes; one per execution that committed."""

    amount = models.IntegerField()
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    note = models.CharField(max_length=100, blank=True)
