from django.contrib import admin
from import_export.admin import ImportExportModelAdmin

from contacts.models import Contact, ContactList, ListMembership, OptOut
from contacts.resources import ContactResource, OptOutResource


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact_list"]
    readonly_fields = ["added_at"]


@admin.register(Contact)
class ContactAdmin(ImportExportModelAdmin):
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
class OptOutAdmin(ImportExportModelAdmin):
    resource_classes = [OptOutResource]
    list_display = ["phone", "source", "reason", "created_by", "created_at"]
    list_filter = ["source", "created_at"]
    search_fields = ["phone", "reason"]
    list_select_related = ["created_by"]
    readonly_fields = ["created_by", "created_at"]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
