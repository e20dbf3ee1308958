"""Admin views of the campaign pages: the live SMS counter, the quote, and
the campaign page's live part, report and confirmation pages."""

from __future__ import annotations

import json

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from campaigns.campaign_page import campaign_live, campaign_report
from campaigns.models import Campaign, MessageTemplate
from campaigns.quote import LIVE_QUOTE_LIMIT, campaign_quote_cached
from campaigns.states import FINAL, allowed_actions, is_due, status_display
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
    An empty ``text`` with a ``template`` measures the template's body
    (what would be sent) and says so with ``source: "template"``.
    Answers :meth:`SmsMeasure.as_dict` plus ``source``, ``suggestion`` (the "make it
    GSM" proposal, or null), ``placeholders``, ``template_errors`` and
    ``problems`` (provider limits). Staff who may write campaigns or
    templates only (the admin site wraps it for login and CSRF).
    """
    if not any(request.user.has_perm(p) for p in BODY_PERMISSIONS):
        raise PermissionDenied("You may not write campaigns or templates.")
    text = request.POST.get("text", "")
    template_id = _int(request.POST.get("template"))
    source = "text"
    if not text.strip() and template_id is not None:
        # An empty campaign body sends the template's text: count that, not "0 characters".
        template_body = MessageTemplate.objects.filter(pk=template_id).values_list(
            "body", flat=True
        )
        if template_body:
            text, source = template_body[0], "template"
    if len(text) > MAX_MEASURE_LENGTH:
        return JsonResponse(
            {"error": f"The text is over {MAX_MEASURE_LENGTH} characters: shorten it."}, status=400
        )
    m = measure(text)
    data = m.as_dict()
    # A "make it GSM" proposal edits the body field: none for the template's text.
    offer = m.non_gsm and source == "text"
    data["suggestion"] = suggest_gsm_replacements(text).as_dict() if offer else None
    data["source"] = source

    defaults: dict = {}
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


# ------------------------------------------------------- the campaign page


def campaign_urls(campaign: Campaign) -> dict[str, str]:
    """Where the campaign page's parts and links live."""
    pk = campaign.pk
    return {
        "live_url": reverse("admin:campaigns_campaign_live", args=[pk]),
        "report_url": reverse("admin:campaigns_campaign_report", args=[pk]),
        "messages_url": reverse("admin:campaigns_message_changelist")
        + f"?campaign__id__exact={pk}",
        "replies_url": reverse("admin:campaigns_inboundmessage_changelist")
        + f"?campaign__id__exact={pk}",
    }


def campaign_buttons(campaign: Campaign, *, may_send: bool) -> list[dict]:
    """The buttons valid for the campaign's state (from campaigns.states).

    Send and schedule open their confirmation page (quote, time); cancel
    opens its own (what is released); pause and resume post at once.
    """
    if not may_send:
        return []
    pk = campaign.pk
    urls = {
        "send_now": reverse("admin:campaigns_campaign_send", args=[pk]),
        "schedule": reverse("admin:campaigns_campaign_schedule", args=[pk]),
        "pause": reverse("admin:campaigns_campaign_operate", args=[pk, "pause"]),
        "resume": reverse("admin:campaigns_campaign_operate", args=[pk, "resume"]),
        "cancel": reverse("admin:campaigns_campaign_cancel", args=[pk]),
    }
    buttons = [
        {
            "operation": op,
            "label": BUTTON_LABELS[op],
            "url": urls[op],
            "post": op in ("pause", "resume"),
        }
        for op in allowed_actions(campaign.status)
        # Once due, a scheduled campaign is starting: moving its time means nothing.
        if not (
            op in ("send_now", "schedule") and campaign.status == "scheduled" and is_due(campaign)
        )
    ]
    if campaign.status == "draft":
        buttons.append(
            {
                "operation": "test_send",
                "label": "Send a test…",
                "url": reverse("admin:campaigns_campaign_test_send", args=[pk]),
                "post": False,
            }
        )
    if campaign.status in FINAL and campaign.failed_count:
        buttons.append(
            {
                "operation": "resend",
                "label": "Send again to temporary failures…",
                "url": reverse("admin:campaigns_campaign_resend", args=[pk]),
                "post": False,
            }
        )
    return buttons


BUTTON_LABELS = {
    "send_now": "Send now…",
    "schedule": "Schedule…",
    "pause": "Pause",
    "resume": "Resume",
    "cancel": "Cancel campaign…",
}


def campaign_page_context(request: HttpRequest, campaign: Campaign, *, may_send: bool) -> dict:
    """Context of the live part (and of the page that first shows it)."""
    live = campaign_live(campaign)
    context = {
        "campaign_live": live,
        "live": live,
        "buttons": campaign_buttons(campaign, may_send=may_send),
        "may_send": may_send,
        **campaign_urls(campaign),
    }
    if campaign.status == Campaign.Status.DRAFT:
        context["report_url"] = ""  # nothing to report before sending
    return context


def campaign_live_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """The live part alone, for htmx polling (and a plain GET: same HTML)."""
    campaign = _campaign_or_404(model_admin, request, object_id)
    context = campaign_page_context(
        request, campaign, may_send=model_admin.has_send_permission(request)
    )
    return TemplateResponse(request, "admin/campaigns/campaign/_live.html", context)


def campaign_report_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """The delivery report alone (htmx loads it after the page)."""
    campaign = _campaign_or_404(model_admin, request, object_id)
    context = {
        "report": campaign_report(campaign),
        "poll": not status_display(campaign).final,
        **campaign_urls(campaign),
    }
    return TemplateResponse(request, "admin/campaigns/campaign/_report.html", context)


def _campaign_or_404(model_admin, request: HttpRequest, object_id: str) -> Campaign:
    campaign = model_admin.get_object(request, unquote(object_id))
    if campaign is None or not model_admin.has_view_or_change_permission(request, campaign):
        raise Http404("No such campaign, or you may not see it.")
    return Campaign.objects.select_related("account").get(pk=campaign.pk)
