"""The thread page of a conversation (the Inbox's change view) and its parts.

Views only: every change goes through :mod:`campaigns.inbox`
(``conversation_reply``, ``conversation_opt_out``/``_opt_in``,
``conversation_mark_read``/``_handled``); reads come from
:mod:`campaigns.thread`. Every view finds its conversation through the
admin's queryset, which :mod:`campaigns.inbox_access` scopes to what the
user may see, so a foreign conversation answers 404; acting needs the
change permission (403 otherwise).

Parts of the page:

* the live part (``thread/live/?start=<cursor>``): every item from the
  page's oldest item on, refreshed by htmx every few seconds; the reply box
  and the opt-out forms are outside it, so typing is never disturbed;
* older items (``thread/older/?before=<cursor>``), fifty at a time;
* the reply box's counter (``measure/``): the shared SMS counter's answer
  plus the cost on this account and the balance before and after.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_views import MAX_MEASURE_LENGTH
from campaigns.inbox import (
    REASON_MAX,
    conversation_mark_handled,
    conversation_mark_read,
    conversation_opt_in,
    conversation_opt_out,
    conversation_reply,
)
from campaigns.inbox_access import inbox_accounts, sees_every_account
from campaigns.models import Conversation
from campaigns.quote import RateResolver
from campaigns.states import CampaignError
from campaigns.templating import template_errors
from campaigns.thread import (
    Cursor,
    hide_foreign_details,
    optout_state,
    pending_replies,
    thread_page,
    thread_since,
)
from contacts.models import Contact
from providers.limits import check_body
from providers.sms import measure

#: How often an open thread (and the inbox list's "new replies" hint) asks again.
DEFAULT_REFRESH_SECONDS = 10


def post_only(view):
    """``require_POST`` for views that take the model admin first."""

    @wraps(view)
    def wrapper(model_admin, request: HttpRequest, *args, **kwargs):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return view(model_admin, request, *args, **kwargs)

    return wrapper


def refresh_seconds() -> int:
    return int(getattr(settings, "INBOX_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))


class ReplyForm(forms.Form):
    # One per drawn form: submitting it twice sends one reply (conversation_reply).
    key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    body = forms.CharField(
        label="Reply",
        max_length=MAX_MEASURE_LENGTH,
        required=False,  # an empty reply gets the service's own words
        widget=forms.Textarea(attrs={"rows": 3, "data-sms-counter": ""}),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=REASON_MAX,
        required=False,  # the service says what is missing
        widget=forms.TextInput(attrs={"placeholder": "e.g. asked by phone", "size": 30}),
    )


def _conversation(model_admin, request: HttpRequest, object_id: str) -> Conversation:
    conversation = model_admin.get_object(request, unquote(object_id))
    if conversation is None or not model_admin.has_view_or_change_permission(request, conversation):
        raise Http404("No such conversation, or you may not see it.")
    return Conversation.objects.select_related("account", "handled_by").get(pk=conversation.pk)


def _require_change(model_admin, request: HttpRequest, conversation: Conversation) -> None:
    if not model_admin.has_change_permission(request, conversation):
        raise PermissionDenied("You may read this conversation but not act on it.")


def thread_urls(conversation: Conversation) -> dict[str, str]:
    pk = conversation.pk
    return {
        "thread_url": reverse("admin:campaigns_conversation_change", args=[pk]),
        "live_url": reverse("admin:campaigns_conversation_live", args=[pk]),
        "older_url": reverse("admin:campaigns_conversation_older", args=[pk]),
        "reply_url": reverse("admin:campaigns_conversation_reply", args=[pk]),
        "optout_url": reverse("admin:campaigns_conversation_optout", args=[pk]),
        "handled_url": reverse("admin:campaigns_conversation_handled", args=[pk]),
        "measure_url": reverse("admin:campaigns_conversation_measure", args=[pk]),
    }


def _links(request: HttpRequest) -> dict[str, bool]:
    """Which related pages the user may open (others are shown as text)."""
    return {
        "link_campaigns": request.user.has_perm("campaigns.view_campaign"),
        "link_contacts": request.user.has_perm("contacts.view_contact"),
    }


def _live_context(request: HttpRequest, conversation: Conversation, thread) -> dict:
    state = optout_state(conversation.phone)
    if not sees_every_account(request.user):
        hide_foreign_details(
            state,
            thread.items,
            account_ids=set(inbox_accounts(request.user).values_list("pk", flat=True)),
            user_id=request.user.pk,
        )
    return {
        "conversation": conversation,
        "thread": thread,
        "pending": pending_replies(conversation),
        "optout": state,
        "refresh_seconds": refresh_seconds(),
        **thread_urls(conversation),
        **_links(request),
    }


def reply_refusal(conversation: Conversation, *, opted_out: bool, may_act: bool) -> str:
    """Why the reply box is disabled, in words (empty: it is not)."""
    if not may_act:
        return "You may read this conversation but not answer it."
    if opted_out:
        return (
            f"{conversation.phone} has opted out: nothing can be sent to it. "
            "Opt it back in (with the reason) if they asked for messages again."
        )
    if not conversation.account.is_active:
        return (
            f"The account {conversation.account} is inactive: replies cannot be sent "
            "through it. Activate it on its account page first."
        )
    return ""


def thread_view(model_admin, request: HttpRequest, object_id: str, *, extra=None) -> HttpResponse:
    """The thread page. Opening it marks the conversation read.

    ``?before=<cursor>`` shows an older page (not live). ``extra`` carries a
    refused action's error and the text the person typed back to the page.
    """
    conversation = _conversation(model_admin, request, object_id)
    before = None
    if request.GET.get("before"):
        try:
            before = Cursor.parse(request.GET["before"])
        except ValueError as exc:
            return HttpResponseBadRequest(f"{exc} Open the thread again from the inbox.")
    if conversation.unread_count:
        conversation = conversation_mark_read(conversation=conversation, user=request.user)
    thread = thread_page(conversation, before=before)
    context = _live_context(request, conversation, thread)
    extra = extra or {}
    may_act = model_admin.has_change_permission(request, conversation)
    contact = Contact.objects.filter(phone=conversation.phone).first()
    account = conversation.account
    context.update(
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": f"Conversation with {conversation.phone}",
            "has_view_permission": True,
            "original": conversation,
            "contact": contact,
            "account": account,
            "live": before is None,
            "may_act": may_act,
            "reply_form": extra.get("reply_form") or ReplyForm(initial={"key": uuid.uuid4().hex}),
            "optout_form": extra.get("optout_form") or ReasonForm(prefix="out"),
            "optin_form": extra.get("optin_form") or ReasonForm(prefix="in"),
            "reply_error": extra.get("reply_error", ""),
            "optout_error": extra.get("optout_error", ""),
            "reply_refusal": reply_refusal(
                conversation, opted_out=context["optout"].opted_out, may_act=may_act
            ),
            "balance": account.available,
            "rate": account.credits_per_segment,
        }
    )
    body_attrs = context["reply_form"].fields["body"].widget.attrs
    body_attrs["data-measure-url"] = context["measure_url"]
    if context["reply_refusal"]:
        body_attrs["disabled"] = True  # the text stays; the refusal says why
    status = 400 if (extra.get("reply_error") or extra.get("optout_error")) else 200
    return TemplateResponse(
        request, "admin/campaigns/conversation/thread.html", context, status=status
    )


def live_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """The live part alone: every item from ``?start=<cursor>`` on."""
    conversation = _conversation(model_admin, request, object_id)
    start = None
    if request.GET.get("start"):
        try:
            start = Cursor.parse(request.GET["start"])
        except ValueError as exc:
            return HttpResponseBadRequest(str(exc))
    if conversation.unread_count:
        # The thread is open in front of someone: what arrives is read.
        conversation = conversation_mark_read(conversation=conversation, user=request.user)
    thread = thread_since(conversation, start=start)
    context = _live_context(request, conversation, thread)
    context["live"] = True
    context["start"] = start or thread.start
    return TemplateResponse(request, "admin/campaigns/conversation/_live.html", context)


def older_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Fifty items before ``?before=<cursor>`` (and the link to the next fifty)."""
    conversation = _conversation(model_admin, request, object_id)
    try:
        before = Cursor.parse(request.GET.get("before", ""))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    context = _live_context(request, conversation, thread_page(conversation, before=before))
    return TemplateResponse(request, "admin/campaigns/conversation/_older.html", context)


@post_only
def reply_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    conversation = _conversation(model_admin, request, object_id)
    _require_change(model_admin, request, conversation)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return thread_view(
            model_admin, request, object_id, extra={"reply_form": form, "reply_error": error}
        )
    try:
        campaign = conversation_reply(
            conversation=conversation,
            user=request.user,
            body=form.cleaned_data["body"],
            idempotency_key=form.cleaned_data["key"],
        )
    except CampaignError as exc:
        return thread_view(
            model_admin,
            request,
            object_id,
            extra={"reply_form": form, "reply_error": " ".join(exc.messages)},
        )
    model_admin.message_user(
        request,
        f"Reply to {conversation.phone} sent ({_credits(campaign.credits_reserved)} "
        "reserved); its status shows below as the provider reports it.",
        messages.SUCCESS,
    )
    return HttpResponseRedirect(thread_urls(conversation)["thread_url"])


@post_only
def optout_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """``action=opt_out`` or ``action=opt_in``, with a reason."""
    conversation = _conversation(model_admin, request, object_id)
    _require_change(model_admin, request, conversation)
    action = request.POST.get("action")
    if action not in ("opt_out", "opt_in"):
        return HttpResponseBadRequest("Say opt_out or opt_in in the action field.")
    prefix = "out" if action == "opt_out" else "in"
    form = ReasonForm(request.POST, prefix=prefix)
    try:
        if not form.is_valid():
            raise CampaignError(" ".join(str(e) for e in form.errors.get("reason", [])))
        reason = form.cleaned_data["reason"]
        if action == "opt_out":
            conversation_opt_out(conversation=conversation, user=request.user, reason=reason)
            done = f"{conversation.phone} is opted out: nothing will be sent to it."
        else:
            lifted = conversation_opt_in(
                conversation=conversation, user=request.user, reason=reason
            )
            done = (
                f"{conversation.phone} is opted back in: messages can be sent to it again."
                if lifted
                else f"{conversation.phone} was not opted out: nothing changed."
            )
    except CampaignError as exc:
        return thread_view(
            model_admin,
            request,
            object_id,
            extra={f"opt{prefix}_form": form, "optout_error": " ".join(exc.messages)},
        )
    model_admin.message_user(request, done, messages.SUCCESS)
    return HttpResponseRedirect(thread_urls(conversation)["thread_url"])


@post_only
def handled_view(model_admin, request: HttpRequest, object_id: str) -> HttpResponse:
    """``handled=1`` marks the conversation handled, ``handled=0`` open again."""
    conversation = _conversation(model_admin, request, object_id)
    _require_change(model_admin, request, conversation)
    handled = request.POST.get("handled") == "1"
    conversation_mark_handled(conversation=conversation, user=request.user, handled=handled)
    model_admin.message_user(
        request,
        "Marked handled." if handled else "Marked open again: it shows as not handled.",
        messages.SUCCESS,
    )
    return HttpResponseRedirect(thread_urls(conversation)["thread_url"])


@post_only
def measure_view(model_admin, request: HttpRequest, object_id: str) -> JsonResponse:
    """The reply box's counter: what the shared counter shows (characters,
    encoding, parts, provider limits) plus ``cost_text``: the price on this
    conversation's account and its available balance before and after."""
    conversation = _conversation(model_admin, request, object_id)
    _require_change(model_admin, request, conversation)
    text = request.POST.get("text", "")
    if len(text) > MAX_MEASURE_LENGTH:
        return JsonResponse(
            {"error": f"The text is over {MAX_MEASURE_LENGTH} characters: shorten it."}, status=400
        )
    account = conversation.account
    m = measure(text)
    data = m.as_dict()
    data.update(
        source="text",
        suggestion=None,
        placeholders=[],
        template_errors=template_errors(text, defaults={}) if text else [],
        problems=check_body(account.backend, m) if text.strip() else [],
    )
    cost = RateResolver(account)(conversation.phone) * m.segments if text.strip() else Decimal(0)
    available = account.available
    data["cost"] = str(cost)
    data["balance"] = str(available)
    data["cost_short"] = cost > available
    data["cost_text"] = (
        f"Costs {_credits(cost)} on {account} · available {_credits(available)}, "
        f"{_credits(available - cost)} after"
        + (" — not enough credits: top the account up first." if cost > available else ".")
    )
    return JsonResponse(data)


def _credits(value: Decimal) -> str:
    text = f"{value:,.2f}"
    return f"{text} credit" + ("" if value == 1 else "s")


def new_replies_view(model_admin, request: HttpRequest) -> HttpResponse:
    """The inbox list's hint: conversations with a reply since ``?since=<cursor>``."""
    try:
        since = Cursor.parse(request.GET.get("since", "")).at
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    cap = 100
    newer = (
        model_admin.get_queryset(request)
        .filter(last_activity_at__gt=since, last_inbound_at__gt=since)
        .order_by()
        .values("pk")[: cap + 1]
    )
    count = len(newer)
    return TemplateResponse(
        request,
        "admin/campaigns/conversation/_new_replies.html",
        {"count": min(count, cap), "more": count > cap},
    )


def now_cursor() -> str:
    return str(Cursor(timezone.now(), 0, 0))
