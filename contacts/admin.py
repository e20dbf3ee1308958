from django.contrib import admin
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils.html import format_html, format_html_join
from import_export.admin import ImportExportModelAdmin

from contacts.models import Contact, ContactList, ListMembership, OptOut, OptOutEvent
from contacts.resources import ContactResource, OptOutResource
from contacts.services import optout_add, optout_remove


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


@admin.register(Contact)
class ContactAdmin(AuditedImportAdmin):
    resource_classes = [ContactResource]
    list_display = ["phone", "first_name", "last_name", "email", "created_at"]
    search_fields = ["phone", "first_name", "last_name", "email"]
    list_filter = ["lists", "created_at"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [MembershipInline]
    show_full_result_count = False
    list_per_page = 100


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
