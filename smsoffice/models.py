from __future__ import annotations

from django.contrib.admin.models import LogEntry


class AuditLog(LogEntry):
    """The admin entry point of the audit page (:mod:`smsoffice.audit`); a
    proxy so the page has its own "view" permission and index entry."""

    class Meta:
        proxy = True
        verbose_name = "audit log"
        verbose_name_plural = "audit log"
        default_permissions = ("view",)
