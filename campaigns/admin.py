from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.urls import path

from campaigns import admin_messages  # noqa: F401  (registers Messages and Replies)
from campaigns.admin_engine import CampaignEngineAdminMixin
from campaigns.admin_views import campaign_quote_context, measure_view
from campaigns.forms import CampaignForm, MessageTemplateForm
from campaigns.models import Campaign, CampaignEvent, MessageTemplate
from providers.backends import delivery_reports_missing


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm  # live SMS counter; refuses unknown placeholders
    list_display = ["name", "body", "updated_at"]
    search_fields = ["name", "body"]
    readonly_fields = ["created_at", "updated_at"]


class CampaignEventInline(admin.TabularInline):
    model = CampaignEvent
    fields = ["created_at", "action", "from_status", "to_status", "user", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(CampaignEngineAdminMixin, admin.ModelAdmin):
    form = CampaignForm  # live SMS counter; refuses unknown placeholders, bad senders
    actions = CampaignEngineAdminMixin.engine_actions  # send, schedule, pause, resume, cancel
    list_display = [
        "name",
        "status",
        "account",
        "scheduled_at",
        "recipients_total",
        "sent_count",
        "delivered_count",
        "failed_count",
        "created_at",
    ]
    list_filter = ["status", "account"]
    search_fields = ["name", "body"]
    list_select_related = ["account", "template"]
    autocomplete_fields = ["template", "lists"]
    readonly_fields = [
        "status",
        "status_reason",
        "recipients_total",
        "queued_count",
        "sent_count",
        "delivered_count",
        "failed_count",
        "skipped_count",
        "cancelled_count",
        "unknown_count",
        "credits_reserved",
        "credits_charged",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "account", "sender", "template", "body"]}),
        ("Recipients", {"fields": ["lists", "extra_numbers"]}),
        ("Schedule", {"fields": ["scheduled_at"]}),
        (
            "Progress",
            {
                "fields": [
                    "status",
                    "status_reason",
                    "recipients_total",
                    "queued_count",
                    "sent_count",
                    "delivered_count",
                    "failed_count",
                    "skipped_count",
                    "cancelled_count",
                    "unknown_count",
                    "credits_reserved",
                    "credits_charged",
                    "started_at",
                    "finished_at",
                ]
            },
        ),
        (None, {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    inlines = [CampaignEventInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        # The live counter of every message body field (campaigns and templates).
        measure = path(
            "measure/",
            self.admin_site.admin_view(measure_view),
            name="campaigns_campaign_measure",
        )
        return [measure, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The quote box (templates/admin/campaigns/campaign/change_form.html).
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and self.has_view_or_change_permission(request, obj):
                extra_context.update(campaign_quote_context(obj))
                # A provider without delivery reports: say why statuses stay "sent".
                extra_context["delivery_reports_note"] = delivery_reports_missing(
                    obj.account.backend
                )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(CampaignEvent)
class CampaignEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "campaign", "action", "from_status", "to_status", "user"]
    list_filter = ["action"]
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
