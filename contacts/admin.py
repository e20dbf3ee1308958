from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from import_export.admin import ExportMixin, ImportExportModelAdmin

from contacts.importing import admin as importing_admin  # noqa: F401  (Contact imports)
from contacts.models import Contact, ContactList, ListMembership, OptOut, OptOutEvent
from contacts.phones import try_normalize_phone
from contacts.resources import ContactResource, OptOutResource
from contacts.services import optout_add, optout_remove

#: Keyword actions of a reply, in words.
#: The empty row of the contact's history tables (constant markup: format_html
#: without arguments is deprecated).
NONE_YET = mark_safe('<tr><td colspan="4">None yet.</td></tr>')

REPLY_ACTIONS = {"opt_out": "STOP (opted out)", "opt_in": "START (asked to opt back in)"}


class AuditedImportAdmin(ImportExportModelAdmin):
    """Each confirmed import writes one audit entry (who, which file, what
    it did) to the admin log, instead of one entry per row."""

    def generate_log_entries(self, result, request):
        totals = result.totals
        counts = ", ".join(
            f"{totals.get(kind, 0)} {label}"
            for kind, label in (
                ("new", "new"),
                ("update", "updated"),
                ("skip", "unchanged"),
                ("delete", "deleted"),
            )
        )
        file_name = (request.POST.get("original_file_name") or "a file")[:100]
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(self.model),
            object_id=None,
            object_repr=f"Import of {file_name}"[:200],
            action_flag=ADDITION,
            change_message=f"Imported {self.model._meta.verbose_name_plural} "
            f"from {file_name}: {counts}.",
        )


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact_list"]
    readonly_fields = ["added_at"]


def _when(value) -> str:
    """The site's one date format, in the site's time zone."""
    return date_format(timezone.localtime(value), "DATETIME_FORMAT")


class OptedOutFilter(admin.SimpleListFilter):
    title = "opt-out"
    parameter_name = "opted_out"

    def lookups(self, request, model_admin):
        return [("yes", "Opted out"), ("no", "Can be texted")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(opted_out=True)
        if self.value() == "no":
            return queryset.filter(opted_out=False)
        return queryset


@admin.register(Contact)
class ContactAdmin(ExportMixin, admin.ModelAdmin):
    """Export through django-import-export; import through our own bulk
    import (contacts.importing), which streams big files in a background
    job and is all or nothing.

    The page shows whether the number may be texted, its lists, and the last
    messages and replies (``campaigns.contact_history``)."""

    resource_classes = [ContactResource]
    import_export_change_list_template = "admin/contacts/contact/change_list.html"
    list_display = ["phone", "first_name", "last_name", "email", "opt_out_state", "created_at"]
    search_fields = ["first_name", "last_name", "email"]
    search_help_text = (
        "A phone number in any format (0412 300 100, +61 412 300 100), or a name or email."
    )
    list_filter = [OptedOutFilter, "lists", "created_at"]
    readonly_fields = ["opt_out_state", "created_at", "updated_at", "history"]
    inlines = [MembershipInline]
    show_full_result_count = False
    list_per_page = 100

    class Media:
        css = {"all": ["contacts/contact_page.css"]}

    def get_queryset(self, request):
        # One EXISTS per row on the opt-out's unique phone index.
        return (
            super()
            .get_queryset(request)
            .annotate(opted_out=Exists(OptOut.objects.filter(phone=OuterRef("phone"))))
        )

    def get_search_results(self, request, queryset, search_term):
        # A phone number is looked up exactly by its E.164 form (indexed),
        # whatever format it was typed in; anything else searches the names.
        phone = try_normalize_phone((search_term or "").strip())
        if phone is not None:
            return queryset.filter(phone=phone), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="May be texted", boolean=False, ordering="opted_out")
    def opt_out_state(self, obj: Contact) -> str:
        if obj.pk is None:
            return "—"
        if getattr(obj, "opted_out", None) is False:  # the list's annotation: no query
            return "Yes"
        optout = OptOut.objects.filter(phone=obj.phone).first()
        if optout is None:
            return "Yes"
        url = reverse("admin:contacts_optout_change", args=[optout.pk])
        why = f": {optout.reason}" if optout.reason else ""
        return format_html(
            '<a class="opted-out" href="{}">No — opted out {} ({}{})</a>',
            url,
            _when(optout.created_at),
            optout.get_source_display(),
            why,
        )

    @admin.display(description="Messages and replies")
    def history(self, obj: Contact) -> str:
        if obj.pk is None:
            return "—"
        from campaigns.contact_history import HISTORY_LIMIT, contact_history

        found = contact_history(phone=obj.phone)
        messages = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    _when(m.sent_at) if m.sent_at else "not sent",
                    reverse("admin:campaigns_campaign_change", args=[m.campaign_id]),
                    m.campaign.name,
                    m.get_status_display(),
                    m.body[:160],
                )
                for m in found.messages
            ),
        )
        replies = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _when(r.received_at),
                    r.campaign.name if r.campaign else "—",
                    REPLY_ACTIONS.get(r.action, r.action or "—"),
                    r.body[:160],
                )
                for r in found.replies
            ),
        )
        base = reverse("admin:campaigns_message_changelist")
        inbox = reverse("admin:campaigns_inboundmessage_changelist")
        return format_html(
            '<div class="contact-history">'
            "<h4>Last {} messages</h4>"
            "<table><thead><tr><th>Sent</th><th>Campaign</th><th>Status</th><th>Text</th></tr>"
            "</thead><tbody>{}</tbody></table>"
            '<p><a href="{}?{}">All messages to this number</a></p>'
            "<h4>Last {} replies</h4>"
            "<table><thead><tr><th>Received</th><th>Campaign</th><th>Keyword</th><th>Text</th>"
            "</tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}?{}">All replies from this number</a></p></div>',
            HISTORY_LIMIT,
            messages or NONE_YET,
            base,
            urlencode({"q": obj.phone}),
            HISTORY_LIMIT,
            replies or NONE_YET,
            inbox,
            urlencode({"q": obj.phone}),
        )

    def get_urls(self):
        # The old import address still leads to the import.
        moved = path(
            "import/",
            self.admin_site.admin_view(
                lambda request: HttpResponseRedirect(reverse("admin:contacts_importjob_add"))
            ),
            name="contacts_contact_import",
        )
        return [moved, *super().get_urls()]


class ListContactInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact"]
    readonly_fields = ["added_at"]
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("contact")


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at"]


@admin.register(ListMembership)
class ListMembershipAdmin(admin.ModelAdmin):
    list_display = ["contact", "contact_list", "added_at"]
    list_filter = ["contact_list"]
    search_fields = ["contact__phone", "contact__first_name", "contact__last_name"]
    list_select_related = ["contact", "contact_list"]
    autocomplete_fields = ["contact", "contact_list"]
    show_full_result_count = False


@admin.register(OptOut)
class OptOutAdmin(AuditedImportAdmin):
    """Opt-outs are added and removed, never edited: each is a record of who
    asked, when and why. Both go through :mod:`contacts.services`."""

    resource_classes = [OptOutResource]
    list_display = ["phone", "source", "reason", "created_by", "created_at"]
    list_filter = ["source", "created_at"]
    search_fields = ["phone", "reason"]
    list_select_related = ["created_by"]
    # Entered here means entered by staff: the source is always "manual".
    readonly_fields = ["source", "created_by", "created_at", "history"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # The history exists once the opt-out does (not on the add form).
        fields = super().get_readonly_fields(request, obj)
        return fields if obj is not None else [f for f in fields if f != "history"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj is not None else [f for f in fields if f != "history"]

    @admin.display(description="History of this number")
    def history(self, obj):
        events = OptOutEvent.objects.filter(phone=obj.phone).select_related("created_by")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.created_at.strftime("%Y-%m-%d %H:%M"),
                    e.get_action_display(),
                    e.get_outcome_display(),
                    e.reason,
                    e.source_reference,
                    e.created_by.get_username() if e.created_by else "",
                )
                for e in events[:200]
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>What</th><th>Outcome</th><th>Why</th>"
            "<th>Reference</th><th>By</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        optout = optout_add(
            phone=obj.phone,
            source=OptOut.Source.MANUAL,
            reason=obj.reason,
            source_reference=obj.source_reference,
            user=request.user,
        )
        obj.pk = optout.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        optout_remove(phone=obj.phone, source_reference="admin", user=request.user)

    def delete_queryset(self, request, queryset):
        for phone in queryset.values_list("phone", flat=True):
            optout_remove(phone=phone, source_reference="admin", user=request.user)


@admin.register(OptOutEvent)
class OptOutEventAdmin(admin.ModelAdmin):
    """The history of every number's opt-out: read-only, never deleted."""

    list_display = [
        "created_at",
        "phone",
        "action",
        "outcome",
        "source",
        "reason",
        "source_reference",
        "account_id",
        "created_by",
    ]
    list_filter = ["action", "outcome", "source", "created_at"]
    search_fields = ["phone", "reason", "source_reference"]
    list_select_related = ["created_by"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
