"""Reads for billing, one module per seam; every name a caller needs is importable from
here (``from levy.billing.selectors import bill_list``).

- ``base``: the estate's clock (``estate_today``) and the money type;
- ``audience``: who a bill applies to;
- ``facts``: one member's facts and status for a bill, and a page of them;
- ``groups``: a member's bills grouped by status for a page (My bills);
- ``stats``: counts per bill (from the counters; recomputed, as their reference);
- ``members``: per-member bill summaries and the member list;
- ``bills`` / ``disputes``: the lists and details the API and the pages show;
- ``dashboard``: the estate at a glance;
- ``schedules``: the estate's recurring bills.

What a member may do with a bill (the refusals) is decided in ``levy.billing.rules``.

Every queryset is scoped to one estate by construction: it starts from an
:class:`~levy.estates.access.EstateAccess`, a bill (which carries its estate), or a
membership. See docs/developer.md for which read each page or endpoint calls.
"""

from levy.billing.selectors.audience import (
    bill_applies_to,
    bill_audience,
    billable_member_count,
    billable_memberships,
    bills_applying_to,
)
from levy.billing.selectors.base import MONEY, ZERO, estate_today
from levy.billing.selectors.bills import (
    BillFilters,
    BillMemberFilters,
    MemberBillFilters,
    bill_detail,
    bill_list,
    bill_member_list,
    member_bill,
    member_bill_list,
    member_bill_with_facts,
)
from levy.billing.selectors.dashboard import Dashboard, cluster_dashboard
from levy.billing.selectors.disputes import DisputeFilters, dispute_list, member_bill_disputes
from levy.billing.selectors.facts import (
    MemberBillState,
    acknowledged_fact,
    bill_member_statuses,
    bill_status_for,
    decorate_bill_members,
    decorate_member_bills,
    dispute_fact,
    last_reopening_refund,
    live_payment,
    member_bill_facts,
    member_bill_states,
    member_bills,
    paid_fact,
    read_member_facts,
)
from levy.billing.selectors.groups import BillGroups, member_bill_groups
from levy.billing.selectors.members import (
    MEMBER_SUMMARY_FIELDS,
    MemberFilters,
    attach_member_summaries,
    member_list,
    members_filtered_by_disputed,
    members_filtered_by_overdue,
    members_with_bill_summary,
)
from levy.billing.selectors.schedules import (
    SCHEDULE_STATUSES,
    ScheduleFilters,
    schedule_detail,
    schedule_list,
    schedules_with_counts,
)
from levy.billing.selectors.stats import BillStats, bills_with_stats, bills_with_stats_recomputed

__all__ = [
    "MEMBER_SUMMARY_FIELDS",
    "MONEY",
    "SCHEDULE_STATUSES",
    "ZERO",
    "BillFilters",
    "BillGroups",
    "BillMemberFilters",
    "BillStats",
    "Dashboard",
    "DisputeFilters",
    "MemberBillFilters",
    "MemberBillState",
    "MemberFilters",
    "ScheduleFilters",
    "acknowledged_fact",
    "attach_member_summaries",
    "bill_applies_to",
    "bill_audience",
    "bill_detail",
    "bill_list",
    "bill_member_list",
    "bill_member_statuses",
    "bill_status_for",
    "billable_member_count",
    "billable_memberships",
    "bills_applying_to",
    "bills_with_stats",
    "bills_with_stats_recomputed",
    "cluster_dashboard",
    "decorate_bill_members",
    "decorate_member_bills",
    "dispute_fact",
    "dispute_list",
    "estate_today",
    "last_reopening_refund",
    "live_payment",
    "member_bill",
    "member_bill_disputes",
    "member_bill_facts",
    "member_bill_groups",
    "member_bill_list",
    "member_bill_states",
    "member_bill_with_facts",
    "member_bills",
    "member_list",
    "members_filtered_by_disputed",
    "members_filtered_by_overdue",
    "members_with_bill_summary",
    "paid_fact",
    "read_member_facts",
    "schedule_detail",
    "schedule_list",
    "schedules_with_counts",
]
