from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from smsoffice import error_pages

admin.site.site_header = "smsoffice"
admin.site.site_title = "smsoffice"
admin.site.index_title = "SMS back office"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("hooks/", include("campaigns.urls")),
    path("admin/", admin.site.urls),
]

# Styled inside the admin look, with a way back (templates/403.html, 404.html).
handler403 = error_pages.permission_denied
handler404 = error_pages.page_not_found
