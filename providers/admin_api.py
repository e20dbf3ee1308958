"""API tokens in the admin: a user makes its own (shown once), staff see
and revoke everyone's. Thin: calls ``providers.services.api_tokens``."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from providers.models import ApiToken
from providers.services.api_tokens import api_token_create, api_token_revoke


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("user")
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        token, raw = api_token_create(user=request.user, name=form.cleaned_data["name"])
        obj.pk = token.pk
        self.message_user(
            request,
            f"Your new API token (copy it now, it is not shown again): {raw}",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens", permissions=["view"])
    def revoke(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)
