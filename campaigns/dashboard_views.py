"""The dashboard's live part: the panel alone, for htmx to refresh in place."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from campaigns.templatetags.dashboard import panel_context


def dashboard_panel_view(request: HttpRequest) -> HttpResponse:
    """The same HTML as on the admin index (wrapped by ``admin_view``: staff only)."""
    return TemplateResponse(request, "admin/dashboard/panel.html", panel_context(request))
