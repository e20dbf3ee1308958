"""Provider top-ups in flight, shown to staff: the ones left ``unknown`` (a
timeout, a crash) wait here for a person who checked at the provider.

Thin: the actions call ``providers.services.topup_intent_resolve``.
"""

from __future__ import annotations

from django.contrib import admin, messages

from providers.models import ProviderAccount, TopUpIntent
from providers.services import CreditError, topup_intent_resolve, user_may


@admin.register(TopUpIntent)
class TopUpIntentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        "source",
        "amount",
        "state",
        "error",
        "ledger_row",
        "settled_at",
    ]
    list_filter = ["state", "backend"]
    search_fields = ["account__name", "source__name", "idempotency_key"]
    list_select_related = ["account", "source", "ledger_row"]
    actions = ["resolve_applied", "resolve_not_applied"]

    def get_queryset(self, request):
        visible = ProviderAccount.objects.visible_to(request.user).values("pk")
        return super().get_queryset(request).filter(account__in=visible)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_resolve_permission(self, request) -> bool:
        return user_may(request.user, "add_credits")

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            unknown = self.get_queryset(request).filter(state=TopUpIntent.State.UNKNOWN).count()
            if unknown:
                self.message_user(
                    request,
                    f"{unknown} provider top-up(s) may or may not have been applied by the "
                    "provider. Check the provider's balance or statement, then mark each one "
                    "applied or not applied (actions).",
                    messages.WARNING,
                )
        return super().changelist_view(request, extra_context)

    def _resolve(self, request, queryset, *, applied: bool) -> None:
        for intent in queryset:
            try:
                done = topup_intent_resolve(intent=intent, applied=applied, user=request.user)
            except CreditError as exc:
                self.message_user(request, f"#{intent.pk}: {exc.messages[0]}", messages.ERROR)
            else:
                self.message_user(request, done, messages.SUCCESS)

    @admin.action(
        description="Checked at the provider: the credits WERE added", permissions=["resolve"]
    )
    def resolve_applied(self, request, queryset):
        self._resolve(request, queryset, applied=True)

    @admin.action(
        description="Checked at the provider: the credits were NOT added", permissions=["resolve"]
    )
    def resolve_not_applied(self, request, queryset):
        self._resolve(request, queryset, applied=False)
