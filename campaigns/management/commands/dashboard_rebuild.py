"""Rebuild the dashboard's daily rows from the messages (after an upgrade)."""

from django.core.management.base import BaseCommand

from campaigns.daily import daily_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the dashboard's daily activity (CampaignDay) from the messages. "
        "Receipts of old messages count on the day they were sent."
    )

    def handle(self, *args, **options):
        rows = daily_rebuild()
        self.stdout.write(f"{rows} daily rows written.")
