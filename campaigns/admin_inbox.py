"""The Inbox: conversations (one per account and number), newest first.

Reads only the Conversation table (kept by :mod:`campaigns.inbox`), with a
bounded paginator and exact phone search, so it stays fast with millions of
messages; one lookup for the page's rows says which numbers are opted out. The change view is the
thread (:mod:`campaigns.admin_thread`). Everything is scoped by
:mod:`campaigns.inbox_access`: a reseller sees only its accounts'
conversations, in the list, its filters and the thread.
"""

from __future__ import annotations

from functools import partial

from django.contrib import admin
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.views.main import ChangeList
from django.urls import path
from django.utils import timezone

from campaigns import admin_thread
from campaigns.admin_messages import PAGING_LIMIT, ExactPhoneSearchMixin
from campaigns.inbox import conversation_mark_handled
from campaigns.inbox_access import conversations_for, inbox_accounts
from campaigns.models import Campaign, Conversation
from campaigns.thread import keyword_in_words
from contacts.models import OptOut
from smsoffice.paging import bounded_paginator

#: Campaigns offered by the "last campaign" filter (newest first).
CAMPAIGN_FILTER_LIMIT = 50


class ConversationStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("unread", "Unread"), ("open", "Not handled"), ("handled", "Handled")]

    def queryset(self, request, queryset):
        if self.value() == "unread":
            return queryset.filter(unread_count__gt=0)
        if self.value() == "open":
            return queryset.filter(handled=False)
        if self.value() == "handled":
            return queryset.filter(handled=True)
        return queryset


class AccountFilter(admin.SimpleListFilter):
    """The accounts the user may see (never another reseller's)."""

    title = "account"
    parameter_name = "account__id__exact"

    def lookups(self, request, model_admin):
        return [(str(a.pk), a.name) for a in inbox_accounts(request.user).only("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(account_id=value) if value.isdigit() else queryset.none()


class LastCampaignFilter(admin.SimpleListFilter):
    """The newest campaigns of the user's accounts (replies and tests are not
    campaigns a reply answers, so they are left out)."""

    title = "last campaign"
    parameter_name = "last_campaign__id__exact"

    def lookups(self, request, model_admin):
        campaigns = (
            Campaign.objects.filter(
                kind=Campaign.Kind.CAMPAIGN,
                account_id__in=inbox_accounts(request.user).values("pk"),
            )
            .exclude(status=Campaign.Status.DRAFT)
            .order_by("-id")
            .only("pk", "name")[:CAMPAIGN_FILTER_LIMIT]
        )
        return [(str(c.pk), c.name) for c in campaigns]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(last_campaign_id=value) if value.isdigit() else queryset.none()


class InboxChangeList(ChangeList):
    """Looks the opt-out state up for the page's rows only (one query on the
    opt-outs' unique phone index), never in the count of the list."""

    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list)
        opted_out = set(
            OptOut.objects.filter(phone__in={row.phone for row in rows}).values_list(
                "phone", flat=True
            )
        )
        for row in rows:
            row.opted_out = row.phone in opted_out
        self.result_list = rows


@admin.register(Conversation)
class ConversationAdmin(ExactPhoneSearchMixin, admin.ModelAdmin):
    search_by_provider_ref = False
    search_help_text = "An exact phone number in any format (0412 300 100, +61 412 300 100)."
    list_display = [
        "phone",
        "last_text",
        "keyword",
        "optout",
        "unread",
        "state",
        "account",
        "last_campaign",
        "when",
    ]
    list_filter = [ConversationStateFilter, AccountFilter, LastCampaignFilter]
    list_select_related = ["account", "last_campaign"]
    paginator = bounded_paginator(PAGING_LIMIT)
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    sortable_by = ()
    list_per_page = 50
    ordering = ["-last_activity_at", "-id"]
    actions = ["mark_handled", "mark_open"]

    change_list_template = "admin/campaigns/conversation/change_list.html"

    def get_queryset(self, request):
        return conversations_for(request.user).select_related("account", "last_campaign")

    def get_changelist(self, request, **kwargs):
        return InboxChangeList

    @admin.display(description="Last reply")
    def last_text(self, obj):
        return obj.last_inbound_text[:80] or "—"

    @admin.display(description="Keyword")
    def keyword(self, obj):
        """What the last reply's keyword asked (the "Opted out" column says
        where the number stands now)."""
        return keyword_in_words(obj.last_inbound_action)

    @admin.display(description="Opted out")
    def optout(self, obj):
        return "Opted out" if getattr(obj, "opted_out", False) else ""

    @admin.display(description="Unread")
    def unread(self, obj):
        return obj.unread_count or ""

    @admin.display(description="State")
    def state(self, obj):
        if obj.handled:
            return f"Handled {timezone.localtime(obj.handled_at):%Y-%m-%d %H:%M}"
        return "Open"

    @admin.display(description="Last activity")
    def when(self, obj):
        return f"{timezone.localtime(obj.last_activity_at):%Y-%m-%d %H:%M}"

    @admin.action(description="Mark selected conversations handled")
    def mark_handled(self, request, queryset):
        for conversation in queryset:
            conversation_mark_handled(conversation=conversation, user=request.user)

    @admin.action(description="Mark selected conversations open again")
    def mark_open(self, request, queryset):
        for conversation in queryset:
            conversation_mark_handled(conversation=conversation, user=request.user, handled=False)

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(partial(view, self))

        # (URL, view, name suffix): the thread's parts and actions.
        routes = [
            ("<path:object_id>/thread/live/", admin_thread.live_view, "live"),
            ("<path:object_id>/thread/older/", admin_thread.older_view, "older"),
            ("<path:object_id>/reply/", admin_thread.reply_view, "reply"),
            ("<path:object_id>/optout/", admin_thread.optout_view, "optout"),
            ("<path:object_id>/handled/", admin_thread.handled_view, "handled"),
            ("<path:object_id>/measure/", admin_thread.measure_view, "measure"),
            ("new-replies/", admin_thread.new_replies_view, "new_replies"),
        ]
        thread = [
            path(route, wrap(view), name=f"campaigns_conversation_{name}")
            for route, view, name in routes
        ]
        return thread + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The thread replaces the stock read-only form (same URL).
        return admin_thread.thread_view(self, request, object_id)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "inbox_since": admin_thread.now_cursor(),
            "refresh_seconds": admin_thread.refresh_seconds(),
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]
