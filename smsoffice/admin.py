"""The audit page: a read-only timeline of who did what and when
(:func:`smsoffice.audit.audit_entries`), filterable by user, source and
object, for users with the "view audit log" permission."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.http import urlencode

from smsoffice.audit import SOURCES, audit_entries
from smsoffice.models import AuditLog

PAGE_SIZE = 100


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        users = get_user_model().objects.order_by("username").only("pk", "username")
        user_id = _int(request.GET.get("user"))
        source = request.GET.get("source", "")
        source = source if source in SOURCES else ""
        text = request.GET.get("q", "")[:200]
        before = _datetime(request.GET.get("before"))
        entries = audit_entries(
            user_id=user_id, source=source, text=text, before=before, limit=PAGE_SIZE
        )
        older = ""
        if len(entries) == PAGE_SIZE:
            params = {"user": user_id or "", "source": source, "q": text}
            older = "?" + urlencode({**params, "before": entries[-1].when.isoformat()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Audit log",
            "entries": entries,
            "users": users,
            "sources": SOURCES,
            "selected_user": user_id,
            "selected_source": source,
            "q": text,
            "before": before,
            "older_url": older,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/smsoffice/audit.html", context)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _datetime(value) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
