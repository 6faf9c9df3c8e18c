"""The pages. Estate pages live under ``estates/<cluster_id>/`` and are views of
:class:`levy.web.views.base.EstatePage`; ``tests/web/test_page_isolation.py`` fails for
one without isolation coverage."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from levy.web.views import (
    auth,
    bills,
    dashboard,
    disputes,
    home,
    members,
    members_add,
    payment_settings,
    resident,
    schedules,
    statements,
    transactions,
    wallet,
)

app_name = "web"

estate_patterns: list[URLPattern | URLResolver] = [
    path("", home.EstateLanding.as_view(), name="estate"),
    path("dashboard/", dashboard.DashboardPage.as_view(), name="dashboard"),
    path("bills/", bills.BillListPage.as_view(), name="bills"),
    path("bills/new/", bills.NewBillPage.as_view(), name="bill-new"),
    path("bills/export.csv", bills.BillsExport.as_view(), name="bills-export"),
    path("bills/<str:bill_id>/", bills.BillPage.as_view(), name="bill"),
    path("bills/<str:bill_id>/members.csv", bills.BillMembersExport.as_view(), name="bill-members-export"),
    # Before any "members/<user_id>/" page: these words are not ids.
    path("members/new/", members_add.NewMemberPage.as_view(), name="member-new"),
    path("members/import/", members_add.ImportMembersPage.as_view(), name="members-import"),
    path("members/imports/<str:import_id>/", members_add.MemberImportPage.as_view(), name="member-import"),
    path("members/", members.MemberListPage.as_view(), name="members"),
    path("members/export.csv", members.MembersExport.as_view(), name="members-export"),
    path("members/<str:user_id>/", members.MemberPage.as_view(), name="member"),
    path("members/<str:user_id>/statement/", statements.MemberStatementPage.as_view(), name="member-statement"),
    path("disputes/", disputes.DisputeListPage.as_view(), name="disputes"),
    path("disputes/export.csv", disputes.DisputesExport.as_view(), name="disputes-export"),
    path("disputes/<str:dispute_id>/", disputes.DisputePage.as_view(), name="dispute"),
    path("schedules/", schedules.ScheduleListPage.as_view(), name="schedules"),
    path("schedules/new/", schedules.NewSchedulePage.as_view(), name="schedule-new"),
    path("schedules/<str:schedule_id>/", schedules.SchedulePage.as_view(), name="schedule"),
    path("transactions/", transactions.TransactionListPage.as_view(), name="transactions"),
    path("transactions/export.csv", transactions.TransactionsExport.as_view(), name="transactions-export"),
    path("transactions/<str:transaction_id>/", transactions.TransactionPage.as_view(), name="transaction"),
    path("settings/payments/", payment_settings.PaymentSettingsPage.as_view(), name="payment-settings"),
    path("my-bills/", resident.MyBillsPage.as_view(), name="my-bills"),
    path("my-bills/<str:bill_id>/", resident.MyBillPage.as_view(), name="my-bill"),
    path("my-bills/<str:bill_id>/pay/", resident.MyBillPayPage.as_view(), name="my-bill-pay"),
    path("wallet/", wallet.WalletPage.as_view(), name="wallet"),
    path("wallet/statement/", statements.WalletStatementPage.as_view(), name="wallet-statement"),
    path("wallet/top-up/return/", wallet.TopUpReturnPage.as_view(), name="top-up-return"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("", home.home, name="home"),
    path("sign-in/", auth.SignInView.as_view(), name="sign-in"),
    path("sign-out/", auth.SignOutView.as_view(), name="sign-out"),
    path("password/forgot/", auth.ForgotPasswordView.as_view(), name="password-forgot"),
    path("password/sent/", auth.PasswordSentView.as_view(), name="password-sent"),
    path("password/set/<uidb64>/<token>/", auth.SetPasswordView.as_view(), name="set-password"),
    path("notifications/", home.notifications, name="notifications"),
    path("notifications/<str:notification_id>/", home.notification_open, name="notification-open"),
    path("estates/<str:cluster_id>/", include(estate_patterns)),
]
