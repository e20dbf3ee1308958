from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from campaigns.dashboard_views import dashboard_panel_view
from providers.api import api as reseller_api
from smsoffice import error_pages

admin.site.site_header = "smsoffice"
admin.site.site_title = "smsoffice"
admin.site.index_title = "SMS back office"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("hooks/", include("campaigns.urls")),
    # Before the admin's catch-all; admin_view: staff only, like the index.
    path(
        "admin/dashboard/panel/",
        admin.site.admin_view(dashboard_panel_view),
        name="dashboard-panel",
    ),
    path("admin/", admin.site.urls),
    path("api/reseller/", reseller_api.urls),
]

# Styled inside the admin look, with a way back (templates/403.html, 404.html).
handler403 = error_pages.permission_denied
handler404 = error_pages.page_not_found
