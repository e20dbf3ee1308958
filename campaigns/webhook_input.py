"""Guards on what a provider webhook may hand us, before and after parsing.

A webhook must answer every body with a definite status: a body the parser
cannot take is a 400 with the reason (the provider stops retrying a request
it cannot fix), never a 500 (which it would retry forever). So:

- :func:`check_request` refuses, before parsing, a body or query string
  over :data:`MAX_BODY_BYTES` and JSON nested deeper than
  :data:`MAX_JSON_DEPTH` (which would exhaust the parser's recursion);
- :func:`clean_items` takes what the backend parsed and strips NUL
  characters (PostgreSQL text cannot hold them), replaces lone UTF-16
  surrogates (no database encoding can store them) with U+FFFD, and refuses
  a field longer than its cap, naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from providers.backends.base import InboundSms, StatusUpdate

#: Largest body (or query string) accepted, in bytes. The longest real report
#: batch of the five providers is far below this.
MAX_BODY_BYTES: int = getattr(settings, "WEBHOOK_MAX_BODY_BYTES", 512 * 1024)
#: Deepest JSON nesting accepted; real payloads nest two or three levels.
MAX_JSON_DEPTH = 32
#: Reports or replies in one request at most.
MAX_ITEMS = 5000

#: Longest value accepted per field of a parsed item (characters). A reply
#: body allows a long concatenated SMS (255 parts).
FIELD_CAPS: dict[str, int] = {
    "body": 40_000,
    "from_number": 32,
    "to_number": 32,
    "to": 32,
    "provider_ref": 100,
    "in_reply_to_provider_ref": 100,
    "reference": 100,
    "raw_status": 100,
    "error_code": 100,
    "error_message": 2000,
}

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class WebhookInputError(ValueError):
    """The request cannot be taken; the message says why (answered as 400)."""


def check_request(request: HttpRequest) -> None:
    """Refuse a request too large or too deeply nested to parse safely.

    Raises :class:`WebhookInputError`. Reads ``request.body`` (which may
    raise Django's ``RequestDataTooBig`` past ``DATA_UPLOAD_MAX_MEMORY_SIZE``).
    """
    query = request.META.get("QUERY_STRING", "")
    if len(query) > MAX_BODY_BYTES:
        raise WebhookInputError(
            f"the query string is {len(query)} bytes; at most {MAX_BODY_BYTES} are accepted."
        )
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise WebhookInputError(
            f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted."
        )
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise WebhookInputError(
            f"the JSON is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted."
        )


def json_depth(body: bytes) -> int:
    """How deeply ``[``/``{`` nest in ``body``, ignoring brackets inside JSON
    strings. Works on any bytes (0 for a form or plain-text body)."""
    stripped = body.lstrip()
    if not stripped.startswith((b"[", b"{")):
        return 0
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", stripped)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def clean_text(value: str) -> str:
    """``value`` without NUL characters, lone surrogates replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Round-trip through UTF-16: valid pairs join, lone halves become U+FFFD.
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def clean_value(value: Any) -> Any:
    """:func:`clean_text` applied to every string in a JSON-like value (keys too)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


def clean_items(items: list[StatusUpdate | InboundSms]) -> list[StatusUpdate | InboundSms]:
    """The parsed ``items`` with every text cleaned (:func:`clean_text`).

    Raises :class:`WebhookInputError` for more than :data:`MAX_ITEMS` items or
    a field longer than :data:`FIELD_CAPS` allows.
    """
    if len(items) > MAX_ITEMS:
        raise WebhookInputError(
            f"{len(items)} reports in one request; at most {MAX_ITEMS} are accepted."
        )
    cleaned = []
    for position, item in enumerate(items, 1):
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(item):
            value = getattr(item, f.name)
            if isinstance(value, str):
                text = clean_text(value)
                cap = FIELD_CAPS.get(f.name)
                if cap is not None and len(text) > cap:
                    raise WebhookInputError(
                        f"item {position}: '{f.name}' is {len(text)} characters long; "
                        f"at most {cap} are accepted."
                    )
                if text is not value:
                    changes[f.name] = text
            elif f.name == "raw" and value:
                changes["raw"] = clean_value(value)
        cleaned.append(dataclasses.replace(item, **changes) if changes else item)
    return cleaned
