"""Handing a campaign's next dispatch run to django-q2."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from campaigns.engine import clock

DISPATCH_TASK = "campaigns.tasks.dispatch_campaign"


def dispatch_schedule_name(campaign_id: int) -> str:
    return f"campaign {campaign_id}: dispatch"


def enqueue_dispatch(campaign_id: int, *, at: datetime | None = None) -> None:
    """Dispatch ``campaign_id`` once the current transaction commits: now, or
    at ``at`` through a one-off django-q2 Schedule (one per campaign, the
    earliest wins)."""
    transaction.on_commit(lambda: _enqueue(campaign_id, at))


def _enqueue(campaign_id: int, at: datetime | None) -> None:
    from django_q.models import Schedule
    from django_q.tasks import async_task

    if at is None or at <= clock.now() + timedelta(seconds=1):
        async_task(
            DISPATCH_TASK,
            campaign_id,
            task_name=f"dispatch campaign {campaign_id}",
            group=f"campaign-{campaign_id}",
        )
        return
    name = dispatch_schedule_name(campaign_id)
    with transaction.atomic():
        existing = list(Schedule.objects.select_for_update().filter(name=name))
        if any(s.next_run and s.next_run <= at for s in existing):
            return
        Schedule.objects.filter(pk__in=[s.pk for s in existing]).delete()
        Schedule.objects.create(
            name=name,
            func=DISPATCH_TASK,
            args=str(int(campaign_id)),
            schedule_type=Schedule.ONCE,
            repeats=-1,
            next_run=at,
        )
