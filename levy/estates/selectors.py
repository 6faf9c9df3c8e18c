"""Reads of a person's estates, for the API and the pages alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from levy.estates.models import Cluster, Membership

if TYPE_CHECKING:
    from levy.accounts.models import User


def person_memberships(user: User) -> QuerySet[Membership]:
    """The person's active memberships, each with its estate."""
    return Membership.objects.filter(user_id=user.pk, active=True).select_related("cluster")


def person_clusters(user: User) -> QuerySet[Cluster]:
    """The estates the person is an active member of."""
    return Cluster.objects.filter(memberships__user_id=user.pk, memberships__active=True)
