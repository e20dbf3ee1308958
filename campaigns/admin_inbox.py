"""The Inbox: conversations (one per account and number), newest first.

Reads only the Conversation table (kept by :mod:`campaigns.inbox`), with a
bounded paginator and exact phone search, so it stays fast with millions of
messages.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import ShowFacets
from django.utils import timezone

from campaigns.admin_messages import PAGING_LIMIT, ExactPhoneSearchMixin
from campaigns.inbox import conversation_mark_handled
from campaigns.models import Conversation
from smsoffice.paging import bounded_paginator


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


@admin.register(Conversation)
class ConversationAdmin(ExactPhoneSearchMixin, admin.ModelAdmin):
    search_by_provider_ref = False
    list_display = ["phone", "last_text", "unread", "state", "account", "last_campaign", "when"]
    list_filter = [ConversationStateFilter, "account", "last_campaign"]
    list_select_related = ["account", "last_campaign"]
    paginator = bounded_paginator(PAGING_LIMIT)
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    sortable_by = ()
    list_per_page = 50
    ordering = ["-last_activity_at", "-id"]
    actions = ["mark_handled", "mark_open"]

    @admin.display(description="Last reply")
    def last_text(self, obj):
        return obj.last_inbound_text[:80] or "—"

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

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]
