"""Create or update the periodic django-q2 schedules, by name (idempotent).

``make run`` calls it after ``migrate``; running it again changes nothing
except bringing each schedule's function and interval up to date.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from campaigns.tasks import PERIODIC


def sync_schedules() -> list[tuple[str, bool]]:
    """Upsert every :data:`campaigns.tasks.PERIODIC` schedule; returns
    ``(name, created)`` pairs. Duplicates of a name are removed."""
    done = []
    with transaction.atomic():
        for name, (func, minutes) in PERIODIC.items():
            extra = list(
                Schedule.objects.filter(name=name).order_by("pk").values_list("pk", flat=True)
            )
            if len(extra) > 1:
                Schedule.objects.filter(pk__in=extra[1:]).delete()
            _, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                },
                create_defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                    "next_run": timezone.now(),
                },
            )
            done.append((name, created))
    return done


class Command(BaseCommand):
    help = "Create or update the periodic task schedules (start, poll, recover). Idempotent."

    def handle(self, *args, **options):
        for name, created in sync_schedules():
            self.stdout.write(f"{'created' if created else 'up to date'}: {name}")
