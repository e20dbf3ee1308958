"""``manage.py credits_check``: prove every balance equals its ledger."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from providers.models import ProviderAccount
from providers.services import ledger_mismatches


class Command(BaseCommand):
    help = (
        "Recompute every account's balance and reserved credits from the ledger; print "
        "each mismatch and exit with status 1 if there is any."
    )

    def handle(self, *args, **options):
        total = ProviderAccount.objects.count()
        mismatches = ledger_mismatches()
        for mismatch in mismatches:
            self.stderr.write(f"MISMATCH {mismatch}")
        if mismatches:
            raise CommandError(
                f"{len(mismatches)} of {total} account(s) do not match their ledger. Do not "
                "edit balances by hand: find the cause, then record an adjustment.",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(f"All {total} account(s) match their ledger (balance and reserved).")
        )
