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


@shared_task(name="levy.accounts.tasks.send_invitations")
def send_invitations(user_ids: list[str], estate_name: str, invited_by: str) -> int:
    """Invite a batch of people added together (a CSV import): each who cannot sign in
    yet gets their email. One that fails to send is handed to ``send_invitation``,
    which retries it alone, so the others are not sent twice."""
    sent = 0
    for user in User.objects.filter(pk__in=user_ids):
        try:
            sent += invitation_send(user=user, estate_name=estate_name, invited_by=invited_by)
        except OSError:
            send_invitation.delay(str(user.pk), estate_name, invited_by)
    return sent
