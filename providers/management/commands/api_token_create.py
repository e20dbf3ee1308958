"""Make an API token for a user: ``manage.py api_token_create alice "billing"``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from providers.services.api_tokens import api_token_create


class Command(BaseCommand):
    help = "Make a reseller API token for a user and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("name", help="What the token is for, e.g. 'billing system'.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        try:
            token, raw = api_token_create(user=user, name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Token #{token.pk} for {username} ({name}); keep it, it is shown once:")
        self.stdout.write(raw)
