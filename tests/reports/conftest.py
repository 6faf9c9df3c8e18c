from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api.conftest import api_as


def queries_of_download(caller: Any, path: str) -> int:
    """The SQL statements one successful GET of ``path`` by ``caller`` runs."""
    with CaptureQueriesContext(connection) as queries:
        response = api_as(caller).client.get(path)
    assert response.status_code == 200, response.content[:300]
    return len(queries)
