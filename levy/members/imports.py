"""Importing members from a CSV file, as a background job: a 50,000-row file checked
and written inside the request ran past the web server's 30-second timeout.

``member_import_start`` (the request) checks the file's size and encoding, stores it
as a ``MemberImport`` and queues ``members_import`` (a Celery task), returning at once.
``members_import`` (the job):

1. reads every line and checks it, committing its progress every few thousand lines;
2. if any line is wrong, imports nothing and records each bad line (``errors``);
3. otherwise writes every account, membership and wallet with set-based inserts in one
   transaction, under the estate's lock (as adding one member takes it), and records
   the counts. Emails that are already active members of the estate are skipped and
   counted (``skipped``) — the only lines that are not imported. Everyone added who
   cannot sign in yet gets an invitation email once it commits, as when a manager adds
   one member.

The file itself is cleared when the job ends.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from levy.accounts.models import User
from levy.audit.services import audit_record
from levy.billing.counters import MemberState, counters_move_member
from levy.common.errors import ValidationError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess, access_cluster
from levy.estates.models import Cluster, MemberImport, Membership
from levy.estates.permissions import MembersPermissions, Role, default_is_resident
from levy.members.services import invite_many_after_commit, lock_estate_audiences, notify_added
from levy.wallets.models import Wallet

logger = logging.getLogger("levy.imports")

MAX_IMPORT_BYTES = 5 * 1024 * 1024
TRUE_WORDS = frozenset({"true", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", ""})
HEADER_MESSAGE = "The first line must be a header with at least: email,name,role,is_resident"
# Lines checked between two progress updates, and rows per INSERT.
PROGRESS_EVERY = 5000
BATCH = 5000
# Errors kept on the import (the count of bad lines is always exact).
MAX_ERRORS_KEPT = 1000
# Recipients per MEMBERSHIP_ADDED intent.
NOTIFY_CHUNK = 5000
_email = EmailValidator()


@dataclass(frozen=True)
class ImportRow:
    line: int
    email: str
    name: str
    role: str
    is_resident: bool


# --- the request --------------------------------------------------------------------------------------


def member_import_start(
    *, access: EstateAccess, file_name: str, content: bytes, origin: Origin = Origin()
) -> MemberImport:
    """Store an uploaded members CSV and queue its import. Refuses (``ValidationError``
    on ``file``) a file over 5 MB or not UTF-8; everything else is checked by the job."""
    from levy.members.tasks import run_member_import

    access.require(MembersPermissions.ManageMembers)
    if len(content) > MAX_IMPORT_BYTES:
        raise ValidationError(fields={"file": ["The file is larger than 5 MB."]})
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(fields={"file": ["The file must be UTF-8 text."]}) from None
    if "\x00" in text:
        raise ValidationError(fields={"file": ["The file must be CSV text, not a binary file."]})
    with transaction.atomic():
        job = MemberImport.objects.create(
            cluster=access.cluster,
            created_by=access.user,
            file_name=(file_name or "")[:255],
            content=text,
            total_lines=max(text.count("\n") + (0 if text.endswith("\n") else 1) - 1, 0),
        )
        audit_record(
            action="member.import.start",
            target=job,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"file_name": job.file_name, "bytes": len(content)},
        )
        job_id = str(job.pk)
        transaction.on_commit(lambda: run_member_import.delay(job_id), robust=True)
    return job


def recent_member_imports(*, access: EstateAccess, limit: int = 5) -> list[MemberImport]:
    """The estate's latest imports, newest first, without their files (for those who
    manage its members)."""
    access.require(MembersPermissions.ManageMembers)
    rows = MemberImport.objects.filter(cluster_id=access.cluster.pk).defer("content").order_by("-created_at", "-id")
    return list(rows[:limit])


# --- the job ------------------------------------------------------------------------------------------


def _claim(import_id: Any) -> MemberImport | None:
    """Mark the import as running, unless another run has it (a task delivered twice).
    A run that died (worker lost) is taken over after LEVY_IMPORT_STALE_SECONDS."""
    now = timezone.now()
    stale = now - datetime.timedelta(seconds=settings.LEVY_IMPORT_STALE_SECONDS)
    running = [MemberImport.Status.VALIDATING, MemberImport.Status.IMPORTING]
    claimed = (
        MemberImport.objects.filter(pk=import_id)
        .filter(Q(status=MemberImport.Status.QUEUED) | Q(status__in=running, started_at__lt=stale))
        .update(status=MemberImport.Status.VALIDATING, started_at=now, processed_lines=0)
    )
    return MemberImport.objects.select_related("cluster", "created_by").get(pk=import_id) if claimed else None


def _fail(job: MemberImport, errors: list[dict[str, Any]], bad_lines: int) -> MemberImport:
    MemberImport.objects.filter(pk=job.pk).update(
        status=MemberImport.Status.FAILED,
        errors=errors[:MAX_ERRORS_KEPT],
        error_count=bad_lines,
        finished_at=timezone.now(),
        content="",
    )
    job.refresh_from_db()
    return job


def members_import(*, import_id: Any) -> MemberImport | None:
    """Run one queued import (the Celery task calls this). Returns the import as it
    ended, or None if another run has it."""
    job = _claim(import_id)
    if job is None:
        return None
    try:
        access = access_cluster(job.created_by, job.cluster_id) if job.created_by else None
        if access is None or not access.can(MembersPermissions.ManageMembers):
            raise PermissionError
    except Exception:
        return _fail(job, [{"line": 0, "message": "You may no longer manage this estate's members."}], 0)
    rows, errors, bad_lines = _check_lines(job)
    if bad_lines:
        return _fail(job, errors, bad_lines)
    MemberImport.objects.filter(pk=job.pk).update(status=MemberImport.Status.IMPORTING)
    created, skipped = _write(job, access, rows)
    job.refresh_from_db()
    logger.info(
        "member import %s: %s created, %s skipped", job.pk, created, skipped, extra={"cluster_id": str(job.cluster_id)}
    )
    return job


def _lines(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise ValueError(HEADER_MESSAGE)
    reader.fieldnames = header
    for raw in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in raw.items() if k}


def check_line(line: int, values: dict[str, str], seen: set[str]) -> tuple[ImportRow | None, str | None]:
    """One CSV line as a row to import, or the reason it cannot be."""
    email = values.get("email", "").lower()
    name = values.get("name", "")
    role = values.get("role", "").lower() or Role.RESIDENT
    resident_word = values.get("is_resident", "").lower()
    problems: list[str] = []
    try:
        if len(email) > 254:
            raise DjangoValidationError("too long")
        _email(email)
    except DjangoValidationError:
        problems.append("email: Enter a valid email address.")
    if not name:
        problems.append("name: This field may not be blank.")
    elif len(name) > 200:
        problems.append("name: Use at most 200 characters.")
    if role not in Role.values:
        problems.append(f"role: Choose one of: {', '.join(sorted(Role.values))}.")
    if resident_word not in TRUE_WORDS | FALSE_WORDS:
        problems.append("is_resident: use true or false")
    if email in seen:
        problems.append("email: appears twice in the file")
    seen.add(email)
    if problems:
        return None, "; ".join(problems)
    resident = default_is_resident(role) if resident_word == "" else resident_word in TRUE_WORDS
    return ImportRow(line=line, email=email, name=name, role=role, is_resident=resident), None


def _check_lines(job: MemberImport) -> tuple[list[ImportRow], list[dict[str, Any]], int]:
    rows: list[ImportRow] = []
    errors: list[dict[str, Any]] = []
    bad_lines = 0
    seen: set[str] = set()
    done = 0
    try:
        for line, values in _lines(job.content):
            row, problem = check_line(line, values, seen)
            if problem is not None:
                bad_lines += 1
                if len(errors) < MAX_ERRORS_KEPT:
                    errors.append({"line": line, "message": problem})
            elif row is not None:
                rows.append(row)
            done += 1
            if done % PROGRESS_EVERY == 0:
                MemberImport.objects.filter(pk=job.pk).update(processed_lines=done)
    except ValueError as exc:
        return [], [{"line": 1, "message": str(exc)}], 1
    except csv.Error as exc:
        return [], [{"line": done + 2, "message": f"The file is not valid CSV: {exc}."}], 1
    MemberImport.objects.filter(pk=job.pk).update(processed_lines=done)
    if not rows and not bad_lines:
        return [], [{"line": 1, "message": "The file has no members."}], 1
    return rows, errors, bad_lines


def unusable_password() -> str:
    """What ``make_password(None)`` stores — the unusable prefix and random characters —
    without its 40 calls to ``SystemRandom.choice``: 2.9 s of a 17 s profiled
    10,000-line import went there."""
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


def _batches(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write(job: MemberImport, access: EstateAccess, rows: list[ImportRow]) -> tuple[int, int]:
    """Every account, membership and wallet of the file, set-based, in one transaction."""
    cluster: Cluster = job.cluster
    now = timezone.now()
    with transaction.atomic():
        lock_estate_audiences(cluster)
        by_email = {row.email: row for row in rows}
        user_ids: dict[str, Any] = {}
        for batch in _batches(list(by_email)):
            user_ids.update(_accounts_by_email(batch))
        new_users = [
            User(email=email, name=by_email[email].name, password=unusable_password())
            for email in by_email
            if email not in user_ids
        ]
        User.objects.bulk_create(new_users, batch_size=BATCH, ignore_conflicts=True)
        for batch in _batches([u.email for u in new_users]):
            user_ids.update(_accounts_by_email(batch))
        memberships: dict[Any, tuple[Any, bool]] = {}
        for batch in _batches(list(user_ids.values())):
            memberships.update(
                (user_id, (pk, active))
                for user_id, pk, active in Membership.objects.filter(cluster=cluster, user_id__in=batch).values_list(
                    "user_id", "pk", "active"
                )
            )
        skipped = 0
        added: list[Any] = []
        fresh: list[Membership] = []
        for email, row in by_email.items():
            user_id = user_ids[email]
            known = memberships.get(user_id)
            if known is not None and known[1]:
                skipped += 1
                continue
            added.append(user_id)
            if known is None:
                fresh.append(
                    Membership(
                        cluster=cluster, user_id=user_id, role=row.role, is_resident=row.is_resident, joined_at=now
                    )
                )
            else:
                _reactivate(known[0], row, now)
        Membership.objects.bulk_create(fresh, batch_size=BATCH)
        Wallet.objects.bulk_create(
            [Wallet(cluster=cluster, user_id=user_id) for user_id in added], batch_size=BATCH, ignore_conflicts=True
        )
        audit_record(
            action="member.import",
            target=job,
            actor=job.created_by,
            cluster=cluster,
            origin=Origin(),
            data={"created": len(added), "skipped": skipped, "lines": len(rows)},
        )
        for chunk, ids in enumerate(_batches(added, NOTIFY_CHUNK)):
            notify_added(
                cluster=cluster,
                user_ids=ids,
                role=None,
                event_key=f"membership-added:import:{job.pk}:{chunk}",
            )
        # As adding one member does: whoever cannot sign in yet is sent a link to choose
        # a password, once the import commits.
        invite_many_after_commit(added, cluster, job.created_by)
        MemberImport.objects.filter(pk=job.pk).update(
            status=MemberImport.Status.SUCCEEDED,
            created_count=len(added),
            skipped_count=skipped,
            processed_lines=F("total_lines"),
            finished_at=timezone.now(),
            content="",
        )
    return len(added), skipped


def _accounts_by_email(emails: list[str]) -> Iterator[tuple[str, Any]]:
    """(lower-case email, user id) of the accounts these emails sign in to, whatever the
    case an address was stored in (the unique index is on ``lower(email)``)."""
    rows = User.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=emails)
    return iter(rows.values_list("email_lower", "pk"))


def _reactivate(membership_id: Any, row: ImportRow, now: datetime.datetime) -> None:
    """A former member in the file: their membership restarts from now, as adding them
    one by one does (rare; one at a time, with its bill counters moved)."""
    locked = Membership.objects.select_for_update().get(pk=membership_id)
    before = MemberState.of(locked)
    locked.role = row.role
    locked.is_resident = row.is_resident
    locked.active = True
    locked.deactivated_at = None
    locked.joined_at = now
    locked.save(update_fields=["role", "is_resident", "active", "deactivated_at", "joined_at"])
    counters_move_member(before, MemberState.of(locked))
