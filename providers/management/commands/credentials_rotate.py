"""Re-encrypt every stored provider credential with the first CREDENTIALS_KEYS key.

Key rotation: put the new key first in CREDENTIALS_KEYS (keep the old one
after it), restart, run this command, then remove the old key. Also encrypts
any credentials still stored as plain text.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from providers.models import ProviderAccount


class Command(BaseCommand):
    help = "Re-encrypt all provider credentials with the first key of CREDENTIALS_KEYS."

    def handle(self, *args, **options) -> None:
        count = 0
        for pk in ProviderAccount.objects.values_list("pk", flat=True).order_by("pk"):
            with transaction.atomic():
                account = ProviderAccount.objects.select_for_update().only("credentials").get(pk=pk)
                # Reading decrypts with any configured key; writing encrypts
                # with the first.
                ProviderAccount.objects.filter(pk=pk).update(credentials=account.credentials)
            count += 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted the credentials of {count} account(s) with the first key of "
                "CREDENTIALS_KEYS. Older keys can now be removed from it."
            )
        )
