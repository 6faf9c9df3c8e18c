"""``Download CSV`` on the manager lists: the list's streamed CSV export
(``levy.reports.exports``, docs/decisions/0022) with the filters the page itself reads
from the URL, so the file holds every row the list shows, without pages."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase

from levy.reports.exports import Export, export_response
from levy.web.views.base import EstatePage


class ListExport(EstatePage):
    """A list's CSV. Subclasses say which export, with which filters, in ``export``."""

    finances = True

    def export(self, request: HttpRequest) -> Export:
        raise NotImplementedError

    # A streamed file instead of a page: a StreamingHttpResponse, not an HttpResponse.
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:  # type: ignore[override]
        return export_response(self.export(request))
