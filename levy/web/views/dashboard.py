"""The estate's dashboard: the manager's landing page."""

from __future__ import annotations

from typing import Any

from levy.billing.selectors import cluster_dashboard
from levy.web import charts, format, selectors
from levy.web.views.base import EstatePage, url_if_exists

CHART_WEEKS = 12


class DashboardPage(EstatePage):
    template_name = "web/dashboard.html"
    finances = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        currency = self.access.cluster.currency
        weeks = selectors.collections_by_week(self.access, weeks=CHART_WEEKS)
        peak = max((w.amount for w in weeks), default=0)
        dashboard = cluster_dashboard(self.access)
        for bill in dashboard.due_soon:
            bill["url"] = url_if_exists("web:bill", cluster_id=self.access.cluster.pk, bill_id=bill["id"])
        context["dashboard"] = dashboard
        context["weeks"] = weeks
        context["chart"] = charts.bar_chart(
            [w.amount for w in weeks],
            [f"{w.start.day} {w.start:%b}" for w in weeks],
            [format.money(w.amount, currency) for w in weeks],
            max_label=format.money(peak, currency),
        )
        return context
