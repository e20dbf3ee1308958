"""Admin views of issue 3: the live SMS counter and the quote on the campaign page."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from campaigns.models import Campaign, MessageTemplate
from campaigns.quote import LIVE_QUOTE_LIMIT, campaign_quote_cached
from campaigns.templating import compile_template, template_errors
from providers.limits import check_body
from providers.models import ProviderAccount
from providers.sms import measure, suggest_gsm_replacements

#: Longer than any provider accepts (CALLR: 3200), so a real body always fits.
MAX_MEASURE_LENGTH = 10_000

BODY_PERMISSIONS = (
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.add_messagetemplate",
    "campaigns.change_messagetemplate",
)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@require_POST
def measure_view(request: HttpRequest) -> JsonResponse:
    """Measure a message body for the live counter.

    POST form fields: ``text`` (required), and optionally ``account`` (id:
    adds that provider's length limits), ``template`` (id: its defaults make
    names known) or ``defaults`` (JSON text of the template being edited).
    Answers :meth:`SmsMeasure.as_dict` plus ``suggestion`` (the "make it
    GSM" proposal, or null), ``placeholders``, ``template_errors`` and
    ``problems`` (provider limits). Staff who may write campaigns or
    templates only (the admin site wraps it for login and CSRF).
    """
    if not any(request.user.has_perm(p) for p in BODY_PERMISSIONS):
        raise PermissionDenied("You may not write campaigns or templates.")
    text = request.POST.get("text", "")
    if len(text) > MAX_MEASURE_LENGTH:
        return JsonResponse(
            {"error": f"The text is over {MAX_MEASURE_LENGTH} characters: shorten it."}, status=400
        )
    m = measure(text)
    data = m.as_dict()
    data["suggestion"] = suggest_gsm_replacements(text).as_dict() if m.non_gsm else None

    defaults: dict = {}
    template_id = _int(request.POST.get("template"))
    if template_id is not None:
        template = MessageTemplate.objects.filter(pk=template_id).first()
        defaults = dict(template.defaults or {}) if template is not None else {}
    elif request.POST.get("defaults"):
        try:
            parsed = json.loads(request.POST["defaults"])
        except ValueError:
            parsed = None
        defaults = parsed if isinstance(parsed, dict) else {}
    data["placeholders"] = sorted(compile_template(text).names)
    data["template_errors"] = template_errors(text, defaults=defaults) if text else []

    problems: list[str] = []
    account_id = _int(request.POST.get("account"))
    if account_id is not None and text:
        # Only the backend's public limits are used: the campaign form already
        # offers every account, so this tells the user nothing new.
        backend = ProviderAccount.objects.filter(pk=account_id).values_list("backend", flat=True)
        if backend:
            problems = check_body(backend[0], m)
    data["problems"] = problems
    return JsonResponse(data)


def campaign_quote_context(campaign: Campaign, *, refresh: bool = False) -> dict:
    """Context for the quote box of the campaign change page.

    A draft shows its cached quote (:func:`campaigns.quote.campaign_quote_cached`):
    small drafts are quoted when the page opens, big ones when asked
    (``refresh``, the page's "?quote=refresh" link), so opening a draft of
    100,000 recipients costs nothing. A campaign that was sent or scheduled
    shows the quote confirmed at that moment.
    """
    if campaign.status == Campaign.Status.DRAFT:
        data = campaign_quote_cached(campaign=campaign, refresh=refresh)
        if data is None:
            return {
                "campaign_quote_pending": True,
                "campaign_quote_live": True,
                "campaign_quote_limit": LIVE_QUOTE_LIMIT,
            }
        return {
            "campaign_quote": data,
            "campaign_quote_live": True,
            "campaign_quote_computed_at": data.get("computed_at"),
        }
    if campaign.confirmed_quote:
        return {"campaign_quote": campaign.confirmed_quote, "campaign_quote_live": False}
    return {}
