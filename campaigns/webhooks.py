"""Provider webhooks: ``/hooks/<provider>/<account token>/<kind>/``.

``kind`` is ``status`` (delivery reports) or ``inbound`` (replies). The
token is the account's random ``webhook_token``; the backend of that account
parses the request (:meth:`SmsBackend.parse_webhook`) and
:mod:`campaigns.reports` applies what it found, so providers never import
campaigns.

Answers: 403 for an unknown token or a provider that is not the account's,
or a call the backend's :meth:`SmsBackend.verify_webhook` refuses (a bad
provider signature) (nothing read, nothing stored); 400 with the reason for
a body the backend cannot read, or one :mod:`campaigns.webhook_input`
refuses (too large, too deep, a field too long; nothing stored); 503 +
Retry-After when a report concerns a
message whose send is not recorded yet (the provider tries again; applied
reports are idempotent); otherwise the backend's own answer (e.g. SMS
Everyone's plain ``0``), also for reports about messages we do not know, so
the provider stops retrying them.
"""

from __future__ import annotations

import hmac
import logging

from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
)
from django.views.decorators.csrf import csrf_exempt

from campaigns.reports import inbound_apply, statuses_apply
from campaigns.webhook_input import WebhookInputError, check_request, clean_items
from providers.backends import backend_class
from providers.backends.base import (
    WEBHOOK_KINDS,
    InboundSms,
    StatusUpdate,
    UnsupportedOperation,
    WebhookError,
    WebhookForbidden,
)
from providers.models import ProviderAccount

logger = logging.getLogger("campaigns.webhooks")

#: URL kind → the backend capability that makes it exist (declared once).
KINDS = WEBHOOK_KINDS

#: Accounts are looked up by this many leading characters of the token and
#: the whole token is then compared in constant time, so response times can
#: at most reveal a prefix, never the secret itself.
TOKEN_PREFIX = 8
RETRY_AFTER_SECONDS = 60


def webhook_kinds(backend: str) -> list[str]:
    """The webhook kinds an account with ``backend`` offers (for its admin page)."""
    try:
        capabilities = backend_class(backend).capabilities
    except ImproperlyConfigured:  # a backend removed from SMS_BACKENDS
        return []
    return [kind for kind, capability in KINDS.items() if capability in capabilities]


def account_for_token(*, provider: str, token: str) -> ProviderAccount | None:
    """The account whose webhook token is ``token`` and whose backend is
    ``provider``, or None. Compares whole tokens with ``hmac.compare_digest``."""
    if not 16 <= len(token) <= 64:
        return None
    found = None
    candidates = ProviderAccount.objects.filter(webhook_token__startswith=token[:TOKEN_PREFIX])
    for account in candidates:
        # Every candidate is compared (no early exit) in constant time.
        if hmac.compare_digest(account.webhook_token.encode(), token.encode()):
            found = account
    if found is None or found.backend != provider:
        return None
    return found


def _plain(response_class, text: str, **kwargs) -> HttpResponse:
    return response_class(text, content_type="text/plain; charset=utf-8", **kwargs)


@csrf_exempt
def webhook_view(request: HttpRequest, provider: str, token: str, kind: str) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if kind not in KINDS:
        return _plain(
            HttpResponseNotFound, f"No webhook kind {kind!r}; use one of {', '.join(KINDS)}."
        )
    account = account_for_token(provider=provider, token=token)
    if account is None:
        logger.warning(
            "webhook %s/%s: unknown token or provider (from %s)",
            provider,
            kind,
            request.META.get("REMOTE_ADDR", "?"),
        )
        return _plain(HttpResponseForbidden, "Unknown webhook address.")
    if kind not in webhook_kinds(account.backend):
        return _plain(HttpResponseNotFound, f"{provider} sends no {kind} webhooks.")

    backend = account.get_backend()
    try:
        # Size and shape first (a signature check reads the body), then the
        # provider's signature where it signs its calls: the token matched.
        check_request(request)
        backend.verify_webhook(request)
    except WebhookForbidden as exc:
        backend.close()
        logger.warning("webhook %s/%s account %s: forbidden: %s", provider, kind, account.pk, exc)
        return _plain(HttpResponseForbidden, f"Webhook refused: {exc}")
    except WebhookInputError as exc:
        backend.close()
        return _plain(HttpResponseBadRequest, f"Malformed {kind} webhook: {exc}")
    except RequestDataTooBig:
        backend.close()
        return _plain(HttpResponseBadRequest, "Malformed webhook: the body is too large.")
    try:
        items = clean_items(backend.parse_webhook(request))
    except (WebhookError, WebhookInputError) as exc:
        logger.warning("webhook %s/%s account %s: refused: %s", provider, kind, account.pk, exc)
        return _plain(HttpResponseBadRequest, f"Malformed {kind} webhook: {exc}")
    except RequestDataTooBig:
        return _plain(HttpResponseBadRequest, "Malformed webhook: the body is too large.")
    except UnsupportedOperation:
        return _plain(HttpResponseNotFound, f"{provider} sends no webhooks.")
    except Exception:
        # A body the parser chokes on (RecursionError, a type it did not expect,
        # ...): a 500 would make the provider retry it forever.
        logger.exception(
            "webhook %s/%s account %s: the parser failed on the body", provider, kind, account.pk
        )
        return _plain(
            HttpResponseBadRequest,
            f"Malformed {kind} webhook: the body could not be read as a {provider} {kind} report.",
        )
    finally:
        backend.close()

    updates = [item for item in items if isinstance(item, StatusUpdate)]
    replies = [item for item in items if isinstance(item, InboundSms)]
    counts: dict[str, int] = {}
    with transaction.atomic():
        if updates:
            counts = statuses_apply(account=account, updates=updates)
        if replies:
            inbound_apply(account=account, messages=replies)
    logger.info(
        "webhook %s/%s account %s: %s reports %s, %s replies",
        provider,
        kind,
        account.pk,
        len(updates),
        counts or "-",
        len(replies),
    )
    if counts.get("deferred"):
        response = _plain(
            HttpResponse,
            "A reported message is not recorded as sent yet; please retry.",
            status=503,
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return backend.webhook_response(request)
