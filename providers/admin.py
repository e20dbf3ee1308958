from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.html import format_html

# Imported for their @admin.register: API tokens, clients, provider top-ups.
import providers.admin_api
import providers.admin_resellers
import providers.admin_topups  # noqa: F401
from providers.admin_credits import CreditsAdminMixin, VisibleAccountFilter, ledger_csv_response
from providers.forms import CREDENTIAL_FIELD_NAMES, ProviderAccountForm
from providers.models import CreditTransaction, ProviderAccount
from providers.simulator_fields import SIMULATOR_FIELD_NAMES

__all__ = ["ProviderAccountForm"]  # re-exported: the form lives in providers.forms


class SubAccountInline(admin.TabularInline):
    model = ProviderAccount
    fk_name = "parent"
    fields = readonly_fields = ("name", "backend", "balance", "reserved", "is_active")
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
    fields = readonly_fields = (
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
    )
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
    actions = ["top_up_selected", "reconcile_selected", "read_provider_settings"]
    readonly_fields = [
        "provider_settings_display",
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
                    *SIMULATOR_FIELD_NAMES,
                    "credentials_input",
                    "base_url",
                    "default_sender",
                    "is_active",
                ]
            },
        ),
        (
            "Reseller",
            {"fields": ["parent", "owners", "min_credits_per_segment", "min_country_rates"]},
        ),
        (
            "Credits",
            {
                "fields": [
                    "balance",
                    "reserved",
                    "available_display",
                    "provider_balance_display",
                    "low_balance_threshold",
                    "low_balance_emails",
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
        (
            "At the provider",
            {"fields": ["provider_settings_display", "provider_time_zone", "message_validity"]},
        ),
        ("Webhooks", {"fields": ["reports_display", "webhook_token", "webhook_urls"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Provider settings")
    def provider_settings_display(self, obj):
        """What the provider last said the account may do, and what that
        means for campaigns (the quote refuses what it would refuse)."""
        from django.utils.html import format_html_join

        from providers.backends import backend_capabilities
        from providers.backends.base import Capability

        if not obj or not obj.pk:
            return "-"
        if Capability.ACCOUNT_SETTINGS not in backend_capabilities(obj.backend):
            return f"{obj.backend} does not report account settings."
        if obj.provider_settings_checked_at is None:
            return (
                'Not read yet: use the action "Read the settings from the provider" on the '
                "account list (also done every 6 hours)."
            )

        def said(value, yes: str, no: str) -> str:
            return "unknown" if value is None else (yes if value else no)

        home = obj.provider_home_country or "its home country"
        rows = [
            (
                "Unicode (UCS-2) texts",
                said(
                    obj.provider_allows_unicode,
                    "allowed",
                    "not allowed: campaigns with non-GSM characters are refused by the quote",
                ),
            ),
            (
                "International numbers",
                said(
                    obj.provider_allows_international,
                    "allowed",
                    f"not allowed: only numbers of {home}; the quote refuses others",
                ),
            ),
            (
                "Timestamps read in",
                obj.provider_time_zone or "the backend's default zone (set one below)",
            ),
        ]
        checked = timezone.localtime(obj.provider_settings_checked_at).strftime("%Y-%m-%d %H:%M")
        return format_html(
            "{}<div>Read from the provider at {}.</div>",
            format_html_join("", "<div>{}: {}</div>", rows),
            checked,
        )

    @admin.action(description="Read the settings from the provider", permissions=["change"])
    def read_provider_settings(self, request, queryset):
        from django.contrib import messages

        from providers.account_settings import account_settings_refresh
        from providers.backends import backend_capabilities
        from providers.backends.base import Capability, ProviderError

        for account in queryset:
            if Capability.ACCOUNT_SETTINGS not in backend_capabilities(account.backend):
                self.message_user(
                    request,
                    f"{account.name}: its provider does not report account settings.",
                    messages.INFO,
                )
                continue
            try:
                found = account_settings_refresh(account=account)
            except ProviderError as exc:
                self.message_user(request, f"{account.name}: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{account.name}: Unicode {found.allows_unicode}, international "
                f"{found.allows_international}.",
                messages.SUCCESS,
            )

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
        from django.utils.html import format_html_join

        from providers.backends import backend_class
        from providers.backends.base import WEBHOOK_KINDS

        if not obj or not obj.pk:
            return "-"
        labels = {"status": "Delivery reports", "inbound": "Replies"}
        kinds = {kind: (capability, labels[kind]) for kind, capability in WEBHOOK_KINDS.items()}
        cls = backend_class(obj.backend)
        capabilities = cls.capabilities
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
            "{}{}<div>{}</div>",
            format_html_join("", "<div>{}: <code>{}</code></div>", rows),
            note,
            cls.webhook_setup_note,
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
        hidden = {
            "credentials_input",
            "owners",
            "webhook_token",
            "webhook_urls",
            "base_url",
            "min_credits_per_segment",
            "min_country_rates",
        }
        hidden.update(CREDENTIAL_FIELD_NAMES)
        hidden.update(SIMULATOR_FIELD_NAMES)
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
