from functools import partial

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.urls import path

from campaigns import admin_inbox, admin_messages  # noqa: F401  (registers Inbox, Messages, Replies)
from campaigns.admin_engine import CampaignEngineAdminMixin
from campaigns.admin_views import (
    campaign_live_view,
    campaign_page_context,
    campaign_quote_context,
    campaign_report_view,
    measure_view,
)
from campaigns.campaign_page import format_when, scheduled_for
from campaigns.forms import CampaignForm, MessageTemplateForm
from campaigns.models import Campaign, CampaignEvent, MessageTemplate
from campaigns.states import campaign_deletable, event_label, status_display
from providers.backends import delivery_reports_missing


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm  # live SMS counter; refuses unknown placeholders
    list_display = ["name", "body", "updated_at"]
    search_fields = ["name", "body"]
    readonly_fields = ["created_at", "updated_at"]


class CampaignEventInline(admin.TabularInline):
    """The audit trail on the campaign page, in words (not action codes)."""

    model = CampaignEvent
    fields = ["when", "what", "change", "user", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name = "event"
    verbose_name_plural = "History"
    classes = ["collapse"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="When")
    def when(self, event):
        return format_when(event.created_at)

    @admin.display(description="What")
    def what(self, event):
        return event_label(event.action)

    @admin.display(description="State")
    def change(self, event):
        if not event.to_status or event.from_status == event.to_status:
            return "—"
        labels = dict(Campaign.Status.choices)
        return f"{labels.get(event.from_status, '—')} → {labels.get(event.to_status)}"


class CampaignKindFilter(admin.SimpleListFilter):
    """Shows real campaigns by default; inbox replies and test sends on request."""

    title = "kind"
    parameter_name = "kind"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*Campaign.Kind.choices, (self.ALL, "All kinds")]

    def choices(self, changelist):
        # No "All" entry from the base class: the default is "Campaign".
        for value, label in self.lookup_choices:
            selected = self.value() == value or (
                self.value() is None and value == Campaign.Kind.CAMPAIGN
            )
            yield {
                "selected": selected,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() == self.ALL:
            return queryset
        return queryset.filter(kind=self.value() or Campaign.Kind.CAMPAIGN)


@admin.register(Campaign)
class CampaignAdmin(CampaignEngineAdminMixin, admin.ModelAdmin):
    form = CampaignForm  # live SMS counter; refuses unknown placeholders, bad senders
    actions = CampaignEngineAdminMixin.engine_actions  # send, schedule, pause, resume, cancel
    list_display = [
        "name",
        "state",
        "account",
        "recipients",
        "delivered",
        "failed",
        "awaiting_receipt",
        "created",
    ]
    list_filter = [CampaignKindFilter, "status", "account"]
    search_fields = ["name", "body"]
    list_select_related = ["account", "template"]
    autocomplete_fields = ["template", "lists"]
    readonly_fields = ["schedule", "created_by", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "account", "sender", "template", "body"]}),
        ("Recipients", {"fields": ["lists", "extra_numbers"]}),
    ]
    inlines = [CampaignEventInline]

    # ------------------------------------------------------------- the form
    def get_fieldsets(self, request, obj=None):
        fieldsets = list(self.fieldsets)
        if obj is not None:
            if obj.schedule_time_zone and obj.scheduled_at:
                # Read-only: only the confirmed Schedule action sets the time.
                fieldsets.append(("Schedule", {"fields": ["schedule"]}))
            fieldsets.append(
                (
                    "Record",
                    {"fields": ["created_by", "created", "updated"], "classes": ["collapse"]},
                )
            )
        return fieldsets

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # no empty history on Add

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # --------------------------------------------------- delete where it can
    def has_delete_permission(self, request, obj=None):
        # Only a draft nobody sent or scheduled: anything else has an audit
        # trail and ledger rows that must stay.
        if obj is not None and not campaign_deletable(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would refuse any campaign with a history
        return actions

    # ---------------------------------------------------------- list columns
    @admin.display(description="State", ordering="status")
    def state(self, obj):
        label = status_display(obj).label
        when = scheduled_for(obj)
        return f"{label} for {when}" if when else label

    @admin.display(description="Recipients", ordering="recipients_total")
    def recipients(self, obj):
        planned = obj.recipients_total or int((obj.confirmed_quote or {}).get("recipients") or 0)
        return f"{planned:,}"

    @admin.display(description="Delivered", ordering="delivered_count")
    def delivered(self, obj):
        return f"{obj.delivered_count:,}"

    @admin.display(description="Failed", ordering="failed_count")
    def failed(self, obj):
        return f"{obj.failed_count:,}"

    @admin.display(description="Awaiting receipt", ordering="sent_count")
    def awaiting_receipt(self, obj):
        return f"{obj.sent_count:,}"

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return format_when(obj.created_at)

    @admin.display(description="Last changed")
    def updated(self, obj):
        return format_when(obj.updated_at)

    @admin.display(description="Scheduled for")
    def schedule(self, obj):
        return scheduled_for(obj) or format_when(
            obj.scheduled_at, zone=obj.schedule_time_zone or None, with_zone=True
        )

    # ---------------------------------------------------------------- views
    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [
            # The live counter of every message body field (campaigns and templates).
            path("measure/", wrap(measure_view), name="campaigns_campaign_measure"),
            path(
                "<path:object_id>/live/",
                wrap(partial(campaign_live_view, self)),
                name="campaigns_campaign_live",
            ),
            path(
                "<path:object_id>/report/",
                wrap(partial(campaign_report_view, self)),
                name="campaigns_campaign_report",
            ),
        ]
        return [*urls, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Top first: the live part and the report, then the form and the quote.
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and self.has_view_or_change_permission(request, obj):
                obj = Campaign.objects.select_related("account").get(pk=obj.pk)
                refresh = request.GET.get("quote") == "refresh"
                extra_context.update(campaign_quote_context(obj, refresh=refresh))
                extra_context.update(
                    campaign_page_context(request, obj, may_send=self.has_send_permission(request))
                )
                # A provider without delivery reports: say why statuses stay "sent".
                extra_context["delivery_reports_note"] = delivery_reports_missing(
                    obj.account.backend
                )
        return super().change_view(request, object_id, form_url, extra_context)


class EventActionFilter(admin.SimpleListFilter):
    title = "what"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        actions = CampaignEvent.objects.order_by().values_list("action", flat=True).distinct()
        return sorted(((a, event_label(a)) for a in actions), key=lambda pair: pair[1])

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(CampaignEvent)
class CampaignEventAdmin(admin.ModelAdmin):
    """The audit trail of every campaign, in words (codes only in the filter's URL)."""

    list_display = ["when", "campaign", "what", "change", "user", "detail"]

    def get_list_filter(self, request):
        return [EventActionFilter]

    search_fields = ["campaign__name", "detail"]
    list_select_related = ["campaign", "user"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    when = CampaignEventInline.when
    what = CampaignEventInline.what
    change = CampaignEventInline.change
