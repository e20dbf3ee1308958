from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.forms.models import BaseInlineFormSet
from django.utils import timezone

from providers.admin_credits import CreditsAdminMixin, VisibleAccountFilter, ledger_csv_response
from providers.forms import CREDENTIAL_FIELD_NAMES, ProviderAccountForm
from providers.models import CreditTransaction, ProviderAccount

__all__ = ["ProviderAccountForm"]  # re-exported: the form lives in providers.forms


class SubAccountInline(admin.TabularInline):
    model = ProviderAccount
    fk_name = "parent"
    fields = ["name", "backend", "balance", "reserved", "is_active"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class LatestRowsFormSet(BaseInlineFormSet):
    """Only the latest rows: an account's ledger grows without end."""

    def get_queryset(self):
        return super().get_queryset().order_by("-id")[: LedgerInline.latest]


class LedgerInline(admin.TabularInline):
    model = CreditTransaction
    fk_name = "account"
    formset = LatestRowsFormSet
    latest = 20
    fields = [
        "created_at",
        "kind",
        "amount",
        "reserved_change",
        "balance_after",
        "reserved_after",
        "counterparty",
        "reference",
        "created_by",
        "note",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-id"]
    max_num = 0
    verbose_name_plural = "Latest 20 ledger rows (all of them: the Ledger button above)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")


class VisibleAccountsMixin:
    """Resellers see only accounts they own and their sub-accounts, everywhere
    the admin lists or fetches them (changelist, search, autocomplete, detail)."""

    def visible_accounts(self, request):
        return ProviderAccount.objects.visible_to(request.user)


@admin.register(ProviderAccount)
class ProviderAccountAdmin(CreditsAdminMixin, VisibleAccountsMixin, admin.ModelAdmin):
    form = ProviderAccountForm
    list_display = [
        "name",
        "backend",
        "parent",
        "balance",
        "reserved",
        "available_display",
        "is_active",
    ]
    list_filter = ["backend", "is_active"]
    search_fields = ["name"]
    list_select_related = ["parent"]
    actions = ["top_up_selected", "reconcile_selected"]
    readonly_fields = [
        "balance",
        "reserved",
        "available_display",
        "provider_balance_display",
        "webhook_token",
        "webhook_urls",
        "reports_display",
        "created_at",
        "updated_at",
    ]
    autocomplete_fields = ["parent", "owners"]
    inlines = [SubAccountInline, LedgerInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "backend",
                    *CREDENTIAL_FIELD_NAMES,
                    "credentials_input",
                    "base_url",
                    "default_sender",
                    "is_active",
                ]
            },
        ),
        ("Reseller", {"fields": ["parent", "owners"]}),
        (
            "Credits",
            {
                "fields": [
                    "balance",
                    "reserved",
                    "available_display",
                    "provider_balance_display",
                    "low_balance_threshold",
                    "credits_per_segment",
                    "country_rates",
                ]
            },
        ),
        (
            "Pace and quiet hours",
            {
                "fields": [
                    "requests_per_second",
                    "messages_per_second",
                    "send_window_start",
                    "send_window_end",
                    "time_zone",
                ]
            },
        ),
        ("Webhooks", {"fields": ["reports_display", "webhook_token", "webhook_urls"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.filter(pk__in=self.visible_accounts(request).values("pk"))

    @admin.display(description="Webhook URLs")
    def webhook_urls(self, obj):
        """The addresses to give the provider (its account page): one per kind
        of push the backend supports. Built by URL name, so providers never
        import campaigns (which serves them)."""
        from django.conf import settings
        from django.urls import reverse
        from django.utils.html import format_html, format_html_join

        from providers.backends import backend_class
        from providers.backends.base import Capability

        if not obj or not obj.pk:
            return "-"
        kinds = {
            "status": (Capability.DLR_WEBHOOK, "Delivery reports"),
            "inbound": (Capability.REPLIES_WEBHOOK, "Replies"),
        }
        capabilities = backend_class(obj.backend).capabilities
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        rows = [
            (
                label,
                base
                + reverse(
                    "hooks:webhook",
                    kwargs={"provider": obj.backend, "token": obj.webhook_token, "kind": kind},
                ),
            )
            for kind, (capability, label) in kinds.items()
            if capability in capabilities
        ]
        if not rows:
            return f"{obj.backend} pushes nothing to us."
        note = "" if base else " (prefix with this site's address, or set PUBLIC_BASE_URL)"
        return format_html(
            "{}{}",
            format_html_join("", "<div>{}: <code>{}</code></div>", rows),
            note,
        )

    @admin.display(description="Delivery reports and replies")
    def reports_display(self, obj):
        """How statuses and replies reach us with this provider, or that they
        never do (a page must not let people wait for receipts that never come)."""
        from providers.backends import backend_class
        from providers.backends.base import Capability

        if not obj or not obj.backend:
            return "-"
        try:
            cls = backend_class(obj.backend)
        except (ImproperlyConfigured, ImportError):
            return f"Unknown backend {obj.backend!r}: nothing is sent or reported."
        missing = cls.delivery_reports_missing()
        if missing:
            reports = missing
        elif cls.supports(Capability.DLR_WEBHOOK):
            reports = "Delivery reports are pushed to the webhook below."
        else:
            reports = "Delivery reports are polled."
        if cls.capabilities & {Capability.REPLIES_POLL, Capability.REPLIES_WEBHOOK}:
            replies = "Replies are received."
        else:
            replies = "Replies are not received from this provider."
        return f"{reports} {replies}"

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser or request.user.has_perm("providers.change_provideraccount"):
            return fieldsets
        # Resellers: no credentials, owners or webhook secrets.
        hidden = {"credentials_input", "owners", "webhook_token", "webhook_urls", "base_url"}
        hidden.update(CREDENTIAL_FIELD_NAMES)
        return [
            (title, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
            for title, opts in fieldsets
            if [f for f in opts["fields"] if f not in hidden]
        ]


@admin.register(CreditTransaction)
class CreditTransactionAdmin(VisibleAccountsMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "account",
        "kind",
        "amount",
        "reserved_change",
        "balance_after",
        "reserved_after",
        "reference",
        "created_by",
    ]
    list_filter = [VisibleAccountFilter, "kind", "created_at"]
    search_fields = ["reference", "note", "account__name"]
    list_select_related = ["account", "created_by", "counterparty"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ["export_csv"]

    @admin.action(description="Export the selected rows as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        # ``queryset`` comes from get_queryset: only rows of visible accounts.
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return ledger_csv_response(queryset, filename=f"ledger-{stamp}.csv")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.filter(account__in=self.visible_accounts(request).values("pk"))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    # The ledger is append-only: rows are written by services, never by hand.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
