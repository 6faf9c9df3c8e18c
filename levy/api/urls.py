from django.urls import URLPattern, URLResolver, include, path

from levy.api import inbox_views as inbox
from levy.api import me_views, payments_views, signin_views
from levy.api import reports_views as reports
from levy.api.management import views as management
from levy.api.management import views_ledger as ledger
from levy.api.management import views_members as management_members
from levy.api.management import views_payments as management_payments
from levy.api.management import views_schedules as schedules
from levy.api.members import views as members
from levy.api.members import views_payments as member_payments

management_patterns: list[URLPattern | URLResolver] = [
    path("members/", management_members.MemberListView.as_view(), name="management-members"),
    path("members/export.csv", reports.MembersExportView.as_view(), name="management-members-export"),
    path("members/import/", management_members.MemberImportView.as_view(), name="management-members-import"),
    path(
        "members/imports/<str:import_id>/",
        management_members.MemberImportStatusView.as_view(),
        name="management-members-import-status",
    ),
    path("members/<str:user_id>/", management_members.MemberDetailView.as_view(), name="management-member"),
    path(
        "members/<str:user_id>/unlock-sign-in/",
        management_members.MemberSignInUnlockView.as_view(),
        name="management-member-unlock-sign-in",
    ),
    path("bills/", management.BillListView.as_view(), name="management-bills"),
    path("bills/export.csv", reports.BillsExportView.as_view(), name="management-bills-export"),
    path("bills/<str:bill_id>/", management.BillDetailView.as_view(), name="management-bill"),
    path("bills/<str:bill_id>/cancel/", management.BillCancelView.as_view(), name="management-bill-cancel"),
    path("bills/<str:bill_id>/members/", management.BillMembersView.as_view(), name="management-bill-members"),
    path(
        "bills/<str:bill_id>/members/export.csv",
        reports.BillMembersExportView.as_view(),
        name="management-bill-members-export",
    ),
    path("dashboard/", management.DashboardView.as_view(), name="management-dashboard"),
    path("disputes/", management.DisputeListView.as_view(), name="management-disputes"),
    path(
        "disputes/<str:dispute_id>/resolve/", management.DisputeResolveView.as_view(), name="management-dispute-resolve"
    ),
    path("transactions/", ledger.TransactionListView.as_view(), name="management-transactions"),
    path("transactions/export.csv", reports.TransactionsExportView.as_view(), name="management-transactions-export"),
    path("wallets/<str:user_id>/credit/", ledger.WalletCreditView.as_view(), name="management-wallet-credit"),
    path(
        "payment-providers/",
        management_payments.ProviderAccountListView.as_view(),
        name="management-payment-providers",
    ),
    path("top-ups/", management_payments.ManagedTopUpListView.as_view(), name="management-top-ups"),
    path(
        "transactions/<str:transaction_id>/refund/",
        management_payments.TransactionRefundView.as_view(),
        name="management-transaction-refund",
    ),
    path(
        "payment-anomalies/",
        management_payments.PaymentAnomalyListView.as_view(),
        name="management-payment-anomalies",
    ),
    path(
        "transactions/<str:transaction_id>/receipt/",
        reports.ManagementReceiptView.as_view(),
        name="management-transaction-receipt",
    ),
    path(
        "members/<str:user_id>/statement.pdf",
        reports.ManagementStatementPdfView.as_view(),
        name="management-member-statement-pdf",
    ),
    path(
        "members/<str:user_id>/statement.csv",
        reports.ManagementStatementCsvView.as_view(),
        name="management-member-statement-csv",
    ),
    path("schedules/", schedules.ScheduleListView.as_view(), name="management-schedules"),
    path("schedules/<str:schedule_id>/pause/", schedules.SchedulePauseView.as_view(), name="management-schedule-pause"),
    path(
        "schedules/<str:schedule_id>/resume/",
        schedules.ScheduleResumeView.as_view(),
        name="management-schedule-resume",
    ),
    path("schedules/<str:schedule_id>/end/", schedules.ScheduleEndView.as_view(), name="management-schedule-end"),
]

cluster_patterns: list[URLPattern | URLResolver] = [
    path("management/", include(management_patterns)),
    path("bills/", members.MemberBillListView.as_view(), name="member-bills"),
    path("bills/<str:bill_id>/", members.MemberBillDetailView.as_view(), name="member-bill"),
    path("bills/<str:bill_id>/acknowledge/", members.AcknowledgeView.as_view(), name="member-bill-acknowledge"),
    path("bills/<str:bill_id>/dispute/", members.DisputeView.as_view(), name="member-bill-dispute"),
    path("bills/<str:bill_id>/pay/", members.PayView.as_view(), name="member-bill-pay"),
    path("wallet/", members.WalletView.as_view(), name="member-wallet"),
    path("leave/", members.LeaveView.as_view(), name="member-leave"),
    path("wallet/transactions/", members.WalletTransactionsView.as_view(), name="member-wallet-transactions"),
    path("transactions/<str:transaction_id>/retry/", members.RetryView.as_view(), name="member-transaction-retry"),
    path("top-ups/", member_payments.TopUpListView.as_view(), name="member-top-ups"),
    path("top-ups/<str:top_up_id>/", member_payments.TopUpDetailView.as_view(), name="member-top-up"),
    path("bills/<str:bill_id>/pay-by-card/", member_payments.PayByCardView.as_view(), name="member-bill-pay-by-card"),
    path(
        "transactions/<str:transaction_id>/receipt/",
        reports.MemberReceiptView.as_view(),
        name="member-transaction-receipt",
    ),
    path("wallet/statement.pdf", reports.MemberStatementPdfView.as_view(), name="member-wallet-statement-pdf"),
    path("wallet/statement.csv", reports.MemberStatementCsvView.as_view(), name="member-wallet-statement-csv"),
]

urlpatterns = [
    path("auth/token/", signin_views.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh/", signin_views.RefreshView.as_view(), name="auth-token-refresh"),
    path("me/", me_views.MeView.as_view(), name="me"),
    path("clusters/", me_views.ClusterListView.as_view(), name="clusters"),
    path("clusters/<str:cluster_id>/", include(cluster_patterns)),
    # Provider-facing: a webhook per estate account (its id is the secret-free part of
    # the URL entered in the provider's dashboard) and the return from checkout.
    path("payments/webhooks/<str:account_id>/", payments_views.WebhookView.as_view(), name="payments-webhook"),
    path("payments/return/", payments_views.TopUpReturnView.as_view(), name="payments-return"),
    path("notifications/", inbox.NotificationListView.as_view(), name="notifications"),
    path("notifications/read-all/", inbox.NotificationReadAllView.as_view(), name="notifications-read-all"),
    path(
        "notifications/<str:notification_id>/read/",
        inbox.NotificationReadView.as_view(),
        name="notification-read",
    ),
]
