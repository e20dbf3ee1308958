"""Secrets never reach a log line or a stored provider error text.

:func:`redact_text` masks, in any text:

- webhook addresses' secret token (``/hooks/<provider>/<token>/...``), as
  written by ``django.server``'s access log and ``django.request``'s errors;
- ``Authorization`` header values and ``JWT``/``Bearer``/``Basic``
  credentials a provider may echo back in an error;
- every secret value registered with :func:`register_secrets` (provider
  credentials and runtime tokens, registered by the backends that use
  them), in this process.

:func:`install` wraps the logging record factory, so every record of every
logger (``django.request``, ``django.server``, django-q, ours) is redacted
when it is created, whatever handler later writes it; the exception text of
a record is redacted too.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable

MASK = "***"

_WEBHOOK_PATH = re.compile(r"(/hooks/[^/\s\"']+/)[^/\s\"'?]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+")
# A credential has a digit or token punctuation; "Basic authentication" is prose.
_AUTH_SCHEME = re.compile(
    r"(?i)\b(JWT|Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=])[A-Za-z0-9._~+/=-]{8,}"
)

#: Values shorter than this are not registered: masking "1" or "AU" everywhere
#: would garble harmless text (the backends' own rule).
MIN_SECRET_LENGTH = 4
_MAX_SECRETS = 10_000

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()


def register_secrets(values: Iterable[str]) -> None:
    """Remember ``values`` as secrets to mask in this process from now on."""
    global _ordered
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
    if new <= _secrets:
        return
    with _lock:
        if len(_secrets) + len(new) > _MAX_SECRETS:
            _secrets.clear()  # bounded memory; backends re-register on next use
        _secrets.update(new)
        # Longest first, so a secret containing another is masked whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact_text(text: str) -> str:
    """``text`` with webhook tokens, authorization values and registered
    secrets replaced by ``***``."""
    if not text:
        return text
    text = _WEBHOOK_PATH.sub(r"\1" + MASK, text)
    text = _AUTH_HEADER.sub(r"\1" + MASK, text)
    text = _AUTH_SCHEME.sub(r"\1 " + MASK, text)
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact ``record`` in place: its message (with arguments merged) and
    its exception text."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to the handler to report
        return record
    record.msg = redact_text(message)
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
        record.exc_text = record.exc_text.rstrip("\n")
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


class RedactSecrets(logging.Filter):
    """A logging filter doing :func:`redact_record` (for handlers configured
    outside :func:`install`'s reach)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = False


def install() -> None:
    """Redact every log record of this process at creation (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
