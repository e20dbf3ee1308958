"""Provider webhooks: /hooks/<provider>/<account token>/<kind>/ (see campaigns.webhooks)."""

from django.urls import path

from campaigns import webhooks

app_name = "hooks"

urlpatterns = [
    path("<str:provider>/<str:token>/<str:kind>/", webhooks.webhook_view, name="webhook"),
]
