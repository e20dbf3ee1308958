"""Webhook views. Placeholder until the backends issue fills it in."""

from django.http import HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def webhook_view(request, provider: str, token: str, kind: str):
    return HttpResponseNotFound("No webhook here.")
