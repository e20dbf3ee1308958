"""A 20,000-row contact import while a campaign dispatches and webhooks arrive.

Run by ``test_import_under_load.py`` in a child process, because it needs
what production has and the test database has not: a SQLite *file* in WAL
mode with the project's settings (IMMEDIATE transactions, 20 s busy
timeout), and several threads each with its own connection.

Three threads start together:

- the import: upload, stage, confirm and apply 20,000 rows, as the worker does;
- the engine: send a 2,000-recipient campaign now and dispatch it (simulator
  backend) until every message is handed over;
- the provider: POST a delivery report to the webhook for each of 300
  messages of an earlier campaign.

Prints one JSON object: errors (any exception, "database is locked"
included), the webhook answers, what was applied, the campaign's state.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import traceback
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

IMPORT_ROWS = 20_000
RECIPIENTS = 2_000
WEBHOOKS = 300


def setup(db_path: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "smsoffice.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="smsoffice-fault-"))
    setup(tmp / "fault.sqlite3")

    from django.db import connections
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from campaigns.counters import counters_recount
    from campaigns.dispatch import campaign_dispatch
    from campaigns.models import Campaign, Message
    from campaigns.services import campaign_send_now
    from contacts.importing.models import ImportJob
    from contacts.importing.services import (
        import_apply,
        import_confirm,
        import_create,
        import_stage,
    )
    from contacts.models import Contact, ContactList, ListMembership
    from providers.models import ProviderAccount
    from providers.services import credits_top_up

    # An earlier campaign whose delivery reports are still to come.
    works = ProviderAccount.objects.create(
        name="Works", backend="thesmsworks", credentials={"jwt": "x"}
    )
    credits_top_up(account=works, amount=Decimal("1000"), note="fault test")
    earlier = Campaign.objects.create(name="Earlier", account=works, body="Hi", status="sending")
    Message.objects.bulk_create(
        Message(
            campaign=earlier,
            phone=f"+447911{i:06d}",
            body="Hi",
            status=Message.Status.SENT,
            credits=Decimal("1"),
            provider_ref=f"ref-{i}",
            sent_at=timezone.now(),
        )
        for i in range(WEBHOOKS)
    )
    counters_recount(campaign_id=earlier.pk)

    # The campaign that starts while the import runs.
    simulator = ProviderAccount.objects.create(
        name="Simulator",
        backend="simulator",
        credentials={"initial_balance": 100000, "delivery_delay": 600},
        requests_per_second=0,
        messages_per_second=0,
    )
    credits_top_up(account=simulator, amount=Decimal("100000"), note="fault test")
    audience = ContactList.objects.create(name="Audience")
    contacts = Contact.objects.bulk_create(
        Contact(phone=f"+61491{i:06d}", first_name="A") for i in range(RECIPIENTS)
    )
    ListMembership.objects.bulk_create(
        ListMembership(contact=c, contact_list=audience) for c in contacts
    )
    campaign = Campaign.objects.create(
        name="Now", account=simulator, body="Hi {{ first_name }}", sender="Shop"
    )
    campaign.lists.add(audience)

    csv_path = tmp / "contacts.csv"
    with csv_path.open("w") as out:
        out.write("phone,first_name,store\n")
        for i in range(IMPORT_ROWS):
            out.write(f"04{10_000_000 + i:08d},Imported,Store {i % 7}\n")
    connections.close_all()

    errors: list[str] = []
    answers: list[int] = []
    timings: dict[str, float] = {}
    barrier = threading.Barrier(3)

    def guarded(name, work):
        def run():
            try:
                barrier.wait()
                started = time.monotonic()
                work()
                timings[name] = round(time.monotonic() - started, 2)
            except BaseException:
                errors.append(f"{name}: {traceback.format_exc()}")
            finally:
                connections.close_all()

        return threading.Thread(target=run, name=name)

    def do_import():
        from django.core.files.uploadedfile import UploadedFile

        with csv_path.open("rb") as handle:
            upload = UploadedFile(handle, name="contacts.csv", size=csv_path.stat().st_size)
            job = import_create(upload=upload, user=None)
        job = import_stage(job_id=job.pk)
        assert job.status == ImportJob.Status.READY, job.status_detail
        import_confirm(job=job, user=None)
        job = import_apply(job_id=job.pk, time_slice=1e9)
        assert job.status == ImportJob.Status.DONE, job.status_detail

    def do_campaign():
        campaign_send_now(campaign=Campaign.objects.get(pk=campaign.pk), user=None)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            campaign_dispatch(campaign_id=campaign.pk, time_budget=5.0)
            state = Campaign.objects.values_list("status", "queued_count").get(pk=campaign.pk)
            if state[0] != Campaign.Status.SENDING or state[1] == 0:
                return

    def do_webhooks():
        client = Client()
        url = reverse(
            "hooks:webhook",
            kwargs={"provider": "thesmsworks", "token": works.webhook_token, "kind": "status"},
        )
        for i in range(WEBHOOKS):
            report = {
                "messageid": f"ref-{i}",
                "status": "DELIVERED",
                "destination": int(f"447911{i:06d}"),
                "modified": "2024-03-25T21:43:13.229Z",
            }
            response = client.post(url, data=json.dumps(report), content_type="application/json")
            answers.append(response.status_code)

    threads = [
        guarded("import", do_import),
        guarded("campaign", do_campaign),
        guarded("webhooks", do_webhooks),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    campaign.refresh_from_db()
    result = {
        "errors": errors,
        "timings": timings,
        "webhook_answers": sorted(set(answers)),
        "webhooks_sent": len(answers),
        "delivered": Message.objects.filter(
            campaign=earlier, status=Message.Status.DELIVERED
        ).count(),
        "imported": Contact.objects.filter(first_name="Imported").count(),
        "import_status": list(ImportJob.objects.values_list("status", flat=True)),
        "campaign_status": campaign.status,
        "campaign_planned": campaign.planned,
        "campaign_recipients": campaign.recipients_total,
        "campaign_messages": Message.objects.filter(campaign=campaign).count(),
        "campaign_queued": campaign.queued_count,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
