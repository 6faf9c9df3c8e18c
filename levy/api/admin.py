from __future__ import annotations

from django.contrib import admin

from levy.api.models import IdempotencyRecord
from levy.common.admin import ViewOnlyModelAdmin


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ViewOnlyModelAdmin):
    list_display = ("created_at", "key", "cluster", "user", "state", "response_status")
    list_filter = ("state", "response_status")
    list_select_related = ("cluster", "user")
    search_fields = ("key", "user__email")
    show_full_result_count = False
