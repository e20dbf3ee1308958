"""The Messages and Replies lists, built for a million rows.

Every way in is served by an index, so a page costs the same at a thousand
messages and at a million:

- the campaign filter (``?campaign__id__exact=<id>``, an autocomplete, so
  no list of every campaign is built) uses ``(campaign, id)``; the status
  filter is offered once a campaign is chosen and uses
  ``(campaign, status, id)``;
- the search box takes a phone number in any format a person types
  (``0412 300 100``, ``+61 412-300-100``) and looks it up exactly by its
  E.164 form, or else a provider reference, exactly;
- paging is bounded (:mod:`smsoffice.paging`): at most 10,000 rows can be
  paged through, newest first, and the page says when there are more;
- no column sorts (a sort of a million rows is a scan), no facets, no
  filter that reads distinct values.

Messages are a record of what was sent: no one adds, edits or deletes them
here (decisions on ``unknown`` messages are actions of the engine). A
campaign's messages can be downloaded as a streamed, formula-safe CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from campaigns.admin_engine import MessageEngineAdminMixin
from campaigns.models import Campaign, InboundMessage, Message
from contacts.phones import try_normalize_phone
from smsoffice.csvsafe import safe_row
from smsoffice.paging import bounded_paginator

CAMPAIGN_PARAM = "campaign__id__exact"
STATUS_PARAM = "status__exact"
#: Rows a person can page through; past that, filter or search.
PAGING_LIMIT = 10_000
EXPORT_CHUNK = 2000
# Listed with what it needs, so the merged media put it after django.jQuery.
FILTER_JS = [
    "admin/js/vendor/jquery/jquery.min.js",
    "admin/js/jquery.init.js",
    "campaigns/list_filter_autocomplete.js",
]


def campaign_messages_url(campaign_id: int) -> str:
    """The Messages list showing one campaign's messages."""
    query = urlencode({CAMPAIGN_PARAM: campaign_id})
    return f"{reverse('admin:campaigns_message_changelist')}?{query}"


def campaign_replies_url(campaign_id: int) -> str:
    """The Replies list showing the replies to one campaign."""
    query = urlencode({CAMPAIGN_PARAM: campaign_id})
    return f"{reverse('admin:campaigns_inboundmessage_changelist')}?{query}"


def campaign_messages_export_url(campaign_id: int) -> str:
    """The CSV download of one campaign's messages."""
    query = urlencode({CAMPAIGN_PARAM: campaign_id})
    return f"{reverse('admin:campaigns_message_export')}?{query}"


def _campaign_id(value) -> int | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class CampaignAutocompleteFilter(admin.ListFilter):
    """Filter by campaign through the admin's own autocomplete (select2).

    Reads and writes ``?campaign__id__exact=<id>``, the parameter the
    campaign page links with. A value that is not a campaign id shows an
    empty list rather than an error page.
    """

    title = "campaign"
    parameter_name = CAMPAIGN_PARAM
    template = "admin/campaigns/campaign_autocomplete_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        raw = params.pop(self.parameter_name, None)
        self.raw_value = raw
        self.campaign_id = _campaign_id(raw)
        if raw is not None:
            self.used_parameters[self.parameter_name] = raw
        field = model._meta.get_field("campaign")
        widget = AutocompleteSelect(field, model_admin.admin_site, attrs={"data-list-filter": "1"})
        form_field = forms.ModelChoiceField(
            queryset=Campaign.objects.all(), required=False, widget=widget, label="Campaign"
        )
        form_class = type("CampaignFilterForm", (forms.Form,), {self.parameter_name: form_field})
        self.form = form_class(
            data={self.parameter_name: self.campaign_id or ""}, auto_id="id_filter_%s"
        )

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name]

    def choices(self, changelist):
        yield {
            "selected": self.campaign_id is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name, STATUS_PARAM]),
            "display": "All campaigns",
        }

    def queryset(self, request, queryset):
        if self.raw_value is None:
            return queryset
        if self.campaign_id is None:
            return queryset.none()
        return queryset.filter(campaign_id=self.campaign_id)


class CampaignStatusFilter(admin.SimpleListFilter):
    """Status, within one campaign: ``(campaign, status, id)`` serves it.

    Across every campaign a rare status would be a scan of the whole table,
    so the filter shows only once a campaign is chosen.
    """

    title = "status"
    parameter_name = STATUS_PARAM

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def has_output(self) -> bool:
        return CAMPAIGN_PARAM in self.request.GET

    def queryset(self, request, queryset):
        value = self.value()
        if value is None or CAMPAIGN_PARAM not in request.GET:
            return queryset
        return queryset.filter(status=value)


class InboundActionFilter(admin.SimpleListFilter):
    """What a reply did, from a fixed list: never ``SELECT DISTINCT``."""

    title = "keyword"
    parameter_name = "action__exact"
    LABELS = {"opt_out": "Opted out (STOP)", "opt_in": "Opted back in (START)", "": "Plain reply"}

    def lookups(self, request, model_admin):
        return list(self.LABELS.items())

    def choices(self, changelist):
        # A plain reply's value is "", which SimpleListFilter reads as "All".
        value = self.used_parameters.get(self.parameter_name)
        yield {
            "selected": value is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.used_parameters.get(self.parameter_name)
        if value is None:
            return queryset
        return queryset.filter(action=value)


class ExactPhoneSearchMixin:
    """The search box looks a number up by its E.164 form (indexed).

    Whatever a person types (national format, spaces, dashes, brackets,
    ``00`` or ``+``) is normalised the way imports do; text that is no phone
    number is matched exactly against ``provider_ref`` when the model has
    one. Never ``LIKE`` or ``UPPER``: those read every row.
    """

    search_fields = ["phone"]  # shows the search box; the lookup is below
    search_help_text = (
        "An exact phone number in any format (0412 300 100, +61 412 300 100), "
        "or a provider reference."
    )
    search_by_provider_ref = True

    def get_search_results(self, request, queryset, search_term):
        term = (search_term or "").strip()
        if not term:
            return queryset, False
        phone = try_normalize_phone(term)
        if phone is not None:
            return queryset.filter(phone=phone), False
        if self.search_by_provider_ref:
            # The explicit exclude lets SQLite use the partial index.
            return queryset.filter(provider_ref=term).exclude(provider_ref=""), False
        return queryset.none(), False


class BigTableAdminMixin:
    """Settings shared by the Messages and Replies lists (see module doc)."""

    paginator = bounded_paginator(PAGING_LIMIT)
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    sortable_by = ()
    # Compact: 50 rows render in half the time of 100; 200 pages reach the bound.
    list_per_page = 50
    ordering = ["-id"]

    @property
    def media(self):
        media = super().media
        for spec_class in self.list_filter:
            if spec_class is CampaignAutocompleteFilter:
                field = self.model._meta.get_field("campaign")
                media += AutocompleteSelect(field, self.admin_site).media
                media += forms.Media(js=FILTER_JS)
        return media

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        # The same markup as Django's, without rendering a form widget
        # template per row (a third of the page's time at 100 rows).
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            str(obj),
        )


class MessageAdmin(
    BigTableAdminMixin, ExactPhoneSearchMixin, MessageEngineAdminMixin, admin.ModelAdmin
):
    actions = MessageEngineAdminMixin.engine_actions  # decide on unknown messages
    list_display = [
        "phone",
        "campaign",
        "status",
        "status_reason",
        "segments",
        "credits",
        "sent_at",
    ]
    list_filter = [CampaignAutocompleteFilter, CampaignStatusFilter]
    list_select_related = ["campaign"]
    # What a person needs; internals of the engine (claim token, batch
    # reference, lease times, retry bookkeeping) stay out of sight.
    fieldsets = [
        (None, {"fields": ["campaign", "contact", "phone", "status", "status_reason"]}),
        ("Message", {"fields": ["body", "encoding", "segments", "credits"]}),
        ("Times", {"fields": ["created_at", "sent_at", "status_at"]}),
        (
            "Provider",
            {"fields": ["provider_ref", "raw_status", "error_code", "raw_error"]},
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, options in self.fieldsets for name in options["fields"]]

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="campaigns_message_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        campaign_id = _campaign_id(request.GET.get(CAMPAIGN_PARAM))
        if campaign_id is not None:
            extra_context["export_url"] = campaign_messages_export_url(campaign_id)
            extra_context["replies_url"] = campaign_replies_url(campaign_id)
        return super().changelist_view(request, extra_context)

    # ------------------------------------------------------------------ export
    EXPORT_COLUMNS = [
        ("Phone", "phone"),
        ("Contact id", "contact_id"),
        ("Status", "status"),
        ("Reason", "status_reason"),
        ("Encoding", "encoding"),
        ("SMS", "segments"),
        ("Credits", "credits"),
        ("Sent at", "sent_at"),
        ("Status at", "status_at"),
        ("Provider reference", "provider_ref"),
        ("Provider status", "raw_status"),
        ("Error code", "error_code"),
    ]

    def export_view(self, request: HttpRequest):
        """Stream one campaign's messages as CSV (``?campaign__id__exact=<id>``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied("You may not view messages.")
        campaign = Campaign.objects.filter(pk=_campaign_id(request.GET.get(CAMPAIGN_PARAM))).first()
        if campaign is None:
            return HttpResponseBadRequest(
                "Choose a campaign to export: add ?campaign__id__exact=<campaign id> "
                "(the Messages list links here once filtered by a campaign)."
            )
        rows = message_export_rows(
            Message.objects.filter(campaign=campaign), columns=self.EXPORT_COLUMNS
        )
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-messages.csv"'
        )
        return response


class _Echo:
    """A file-like object whose ``write`` returns the line (for streaming)."""

    def write(self, value: str) -> str:
        return value


def message_export_rows(queryset: QuerySet, *, columns: list[tuple[str, str]]) -> Iterator[str]:
    """CSV lines (header first) of ``queryset`` in id order, read in chunks.

    Every text cell goes through :func:`smsoffice.csvsafe.safe_row`;
    statuses are written as their labels.
    """
    writer = csv.writer(_Echo())
    labels = dict(Message.Status.choices)
    names = [name for _label, name in columns]
    status_at = names.index("status") if "status" in names else None
    yield "\ufeff" + writer.writerow([label for label, _name in columns])
    for values in queryset.order_by("id").values_list(*names).iterator(chunk_size=EXPORT_CHUNK):
        row = list(values)
        if status_at is not None:
            row[status_at] = labels.get(row[status_at], row[status_at])
        yield writer.writerow(safe_row("" if v is None else v for v in row))


class InboundMessageAdmin(BigTableAdminMixin, ExactPhoneSearchMixin, admin.ModelAdmin):
    # Its provider_ref index starts with the account: not searchable alone.
    search_by_provider_ref = False
    search_help_text = "An exact phone number in any format (0412 300 100, +61 412 300 100)."
    list_display = ["received_at", "phone", "short_body", "action_label", "campaign", "account"]
    list_filter = [CampaignAutocompleteFilter, InboundActionFilter, "account"]
    list_select_related = ["campaign", "account"]
    fields = [
        "received_at",
        "phone",
        "contact",
        "body",
        "action",
        "campaign",
        "in_reply_to",
        "account",
        "to_number",
        "provider_ref",
    ]
    readonly_fields = fields

    @admin.display(description="message")
    def short_body(self, obj: InboundMessage) -> str:
        return obj.body if len(obj.body) <= 80 else obj.body[:79] + "…"

    @admin.display(description="keyword")
    def action_label(self, obj: InboundMessage) -> str:
        return InboundActionFilter.LABELS.get(obj.action, obj.action) if obj.action else ""


admin.site.register(Message, MessageAdmin)
admin.site.register(InboundMessage, InboundMessageAdmin)
