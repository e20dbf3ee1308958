from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from providers.api import api as reseller_api

admin.site.site_header = "smsoffice"
admin.site.site_title = "smsoffice"
admin.site.index_title = "SMS back office"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("hooks/", include("campaigns.urls")),
    path("admin/", admin.site.urls),
    path("api/reseller/", reseller_api.urls),
]
