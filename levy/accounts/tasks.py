"""Background work for accounts: invitation emails, sent after the commit that added
the member, outside any transaction."""

from __future__ import annotations

from celery import shared_task

from levy.accounts.invitations import invitation_send
from levy.accounts.models import User


@shared_task(
    name="levy.accounts.tasks.send_invitation",
    autoretry_for=(OSError,),
    retry_backoff=60,
    max_retries=5,
)
def send_invitation(user_id: str, estate_name: str, invited_by: str) -> bool:
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return False
    return invitation_send(user=user, estate_name=estate_name, invited_by=invited_by)
