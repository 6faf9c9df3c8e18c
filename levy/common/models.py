from __future__ import annotations

import uuid

from django.db import models


class UUIDModel(models.Model):
    """Non-guessable primary key: every identifier that reaches a URL is a UUID."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True


class TimestampedModel(UUIDModel):
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
