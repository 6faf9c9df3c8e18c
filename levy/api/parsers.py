from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, but a body nested deeply enough to exhaust the recursion
    limit is a parse error (400), not a crash."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None


class FormParserRefusingJSON(FormParser):
    """A form body whose only field is a JSON document was meant as JSON: ``curl -d``
    sends that without ``Content-Type: application/json``. Say so, instead of
    "This field is required." for every field the caller did send."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if len(data) == 1 and next(iter(data)).lstrip()[:1] in ("{", "["):
            raise ParseError(
                "The body is not JSON: it was sent as a form (Content-Type: application/x-www-form-urlencoded). "
                "Send it with Content-Type: application/json."
            )
        return data
