"""403 and 404 pages inside the admin look, with a way back.

Django's own handlers render the templates with a bare context; these add
the admin site's (header, user links) and a safe "back" link: the referring
page when it is on this site, else the admin index.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def _back_url(request: HttpRequest) -> str:
    referer = request.headers.get("referer", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return reverse("admin:index")


def _context(request: HttpRequest, **extra) -> dict:
    context = {"back_url": _back_url(request), **extra}
    if getattr(request, "user", None) is not None and request.user.is_active:
        context.update(admin.site.each_context(request))
    else:
        context.update(site_title=admin.site.site_title, site_header=admin.site.site_header)
    return context


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    reason = str(exception) if exception is not None and str(exception) else ""
    response = TemplateResponse(request, "403.html", _context(request, reason=reason), status=403)
    return response.render()


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    response = TemplateResponse(request, "404.html", _context(request), status=404)
    return response.render()
