"""A person's inbox: the list, and marking one notification read, or all of them. The
API and the pages both call these; each touches only the caller's own notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.utils import timezone

from levy.common.errors import NotFoundError
from levy.estates.access import parse_uuid
from levy.notifications.models import Notification

if TYPE_CHECKING:
    from levy.accounts.models import User


def notification_list(*, user: User, unread: bool | None = None) -> QuerySet[Notification]:
    """``user``'s notifications, newest first; ``unread`` True or False keeps only the
    unread or the read ones."""
    items = Notification.objects.filter(recipient_id=user.pk)
    if unread is True:
        items = items.filter(read_at__isnull=True)
    elif unread is False:
        items = items.filter(read_at__isnull=False)
    return items.order_by("-created_at", "-id")


def notification_mark_read(*, user: User, notification_id: object) -> Notification:
    """Mark one of ``user``'s notifications read (a second time changes nothing) and
    return it; another person's, or none, is ``NotFoundError``."""
    pk = parse_uuid(notification_id)
    Notification.objects.filter(pk=pk, recipient_id=user.pk, read_at__isnull=True).update(read_at=timezone.now())
    item = Notification.objects.filter(pk=pk, recipient_id=user.pk).first()
    if item is None:
        raise NotFoundError()
    return item


def notifications_mark_all_read(*, user: User) -> int:
    """Mark every unread notification of ``user`` read; how many were."""
    return Notification.objects.filter(recipient_id=user.pk, read_at__isnull=True).update(read_at=timezone.now())
