"""Benchmark: one campaign of N recipients through plan, dispatch and status apply.

    .venv/bin/python benchmarks/campaign.py                 # N = 100,000
    .venv/bin/python benchmarks/campaign.py --n 1000000     # memory at 1M
    .venv/bin/python benchmarks/campaign.py --n 20000 --batch 250
    .venv/bin/python benchmarks/campaign.py --db postgres    # a fresh PostgreSQL database
                                            # (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432)

On a fresh SQLite database in a temporary directory (never the project's),
or a fresh PostgreSQL database dropped afterwards,
with one worker (this process): N contacts in a list, a personalised body,
the simulator with no latency and no rate limit. Prints, per stage, the
seconds, recipients (or updates) per second and the process's peak memory
(max RSS so far) so flatness can be compared across N:

- plan: ``campaign_plan`` (stream recipients, render, measure, bulk insert;
  on PostgreSQL a writer thread COPYs each chunk while the next is rendered,
  then the messages are analyzed, as after any large plan);
- dispatch: ``campaign_dispatch`` runs until the campaign is complete
  (claim, wash, ``SimulatorBackend.send``, record, charge), batches of
  ``--batch``; the simulated provider keeps its own bookkeeping in memory
  (``--simulator-state db`` keeps it in the database, as ``make run`` does:
  one more row written per message, which is the fake provider's work, not
  the engine's);
- status apply: ``campaigns.reports.statuses_apply`` with a delivered report
  per message, 5,000 per call.

Each stage is printed next to its physical limit, measured on the same
database in the same run (see ``benchmarks/limits.py``): the same writes
with no engine logic at all.

Targets (issue 16): plan >= 50,000/s on PostgreSQL; dispatch >= 10,000/s
and status apply >= 20,000/s on both databases; peak memory < 200 MB at
1,000,000 and flat as N grows.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.limits import (  # noqa: E402
    limit_dispatch,
    limit_plan,
    limit_status_apply,
    scratch_rows_like,
    setup_database,
)

FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dmitri", "Emma", "Fatima", "Giovanni", "Hannah", "Zoë"]
BODY = (
    "Hi {{ first_name|default:'there' }}, 20% off everything this weekend. Reply STOP to opt out."
)


def setup_django() -> None:
    os.environ.pop("REDIS_URL", None)
    from benchmarks.limits import production_settings

    production_settings()
    from django.conf import settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.LOGGING_CONFIG = None
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)


class MemoryState(dict):
    """The simulator's cache-shaped state API over a dict (never evicts).

    Without the per-message references the simulator keeps for crash
    reconciliation (``...:ref:<reference>``), which this run never looks up:
    a million of them would be ~450 MB of the fake provider's memory in the
    peak this script prints for the engine.
    """

    def set(self, key, value, timeout=None):
        self[key] = value

    def add(self, key, value, timeout=None):
        return self.setdefault(key, value) is value

    def get_many(self, keys):
        return {k: self[k] for k in keys if k in self}

    def set_many(self, mapping, timeout=None):
        self.update((k, v) for k, v in mapping.items() if ":ref:" not in k)
        return []

    def delete_many(self, keys):
        for key in keys:
            self.pop(key, None)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def add_contacts(n: int, contact_list) -> None:
    from django.db import transaction

    from contacts.models import Contact, ListMembership

    for start in range(0, n, 10_000):
        end = min(n, start + 10_000)
        with transaction.atomic():
            contacts = Contact.objects.bulk_create(
                Contact(phone=f"+614{i:08d}", first_name=FIRST_NAMES[i % len(FIRST_NAMES)])
                for i in range(start, end)
            )
            ListMembership.objects.bulk_create(
                ListMembership(contact=c, contact_list=contact_list) for c in contacts
            )


_cpu_at_mark = 0.0


def mark() -> float:
    """Start timing a stage: wall clock returned, this process's CPU time kept."""
    global _cpu_at_mark
    _cpu_at_mark = time.process_time()
    return time.perf_counter()


def cpu_since_mark() -> float:
    return time.process_time() - _cpu_at_mark


def stage(
    name: str,
    count: int,
    seconds: float,
    unit: str,
    limit: float | None = None,
    cpu: float | None = None,
) -> None:
    """One line per stage. ``cpu``: this process's CPU seconds (Python and,
    on SQLite, the database's own work too, which runs in-process): on a
    shared machine, ``count / cpu`` is the rate with a core to itself."""
    physical = (
        f"   limit {count / limit:>10,.0f}/s ({count / seconds / (count / limit):.0%} of it)"
        if limit
        else ""
    )
    per_cpu = f"   {count / cpu:>8,.0f}/CPU s" if cpu else ""
    print(
        f"{name:<13} {count:>10,} {unit:<8} {seconds:>8.2f} s {count / seconds:>10,.0f}/s "
        f"{peak_mb():>8.0f} MB peak{per_cpu}{physical}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="recipients")
    parser.add_argument("--batch", type=int, default=500, help="messages per send call")
    parser.add_argument("--simulator-state", choices=["memory", "db"], default="memory")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--no-limits", action="store_true", help="skip the physical limits (they hold N rows)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsoffice-bench-") as tmp:
        drop = setup_database(args.db, Path(tmp))
        try:
            run(args)
        finally:
            drop()


def run(args) -> None:
    if True:  # one indentation level, as before the split into run()
        setup_django()
        from django.db.models import Count

        from campaigns.engine import campaign_dispatch, campaign_plan
        from campaigns.engine import enqueue as engine_enqueue
        from campaigns.models import Campaign, Message
        from campaigns.reports import statuses_apply
        from campaigns.services import campaign_send_now
        from contacts.models import ContactList
        from providers.backends.base import DeliveryStatus, StatusUpdate
        from providers.backends.simulator import SimulatorBackend
        from providers.models import ProviderAccount
        from providers.services import credits_top_up

        engine_enqueue._enqueue = lambda campaign_id, at: None  # this process is the worker
        account = ProviderAccount.objects.create(
            name="Bench",
            backend="simulator",
            credentials={"seed": 1, "latency": 0, "reply_rate": 0, "balance": args.n * 10},
            requests_per_second=0,
            messages_per_second=0,
        )
        credits_top_up(account=account, amount=Decimal(args.n * 2))
        contact_list = ContactList.objects.create(name="Bench")
        start = mark()
        add_contacts(args.n, contact_list)
        print(
            f"{args.db}, {os.cpu_count()} CPUs, simulator state in {args.simulator_state}, "
            f"batches of {args.batch}; "
            f"{args.n:,} contacts made in {time.perf_counter() - start:.1f} s"
        )
        campaign = Campaign.objects.create(name="Bench", account=account, sender="Bench", body=BODY)
        campaign.lists.add(contact_list)
        campaign = Campaign.objects.select_related("account").get(pk=campaign.pk)

        start = mark()
        campaign_send_now(campaign=campaign, user=None)
        stage("quote+reserve", args.n, time.perf_counter() - start, "recips")
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)

        start = mark()
        campaign_plan(campaign_id=campaign.pk)
        planned = time.perf_counter() - start
        planned_cpu = cpu_since_mark()
        limits = None
        if not args.no_limits:
            rows = scratch_rows_like(campaign.pk)
            ids = [row[0] for row in rows]
            limits = {
                "plan": limit_plan(rows),
                "dispatch": limit_dispatch(ids, args.batch),
                "status": limit_status_apply(ids, 5000),
            }
            del rows
        stage("plan", args.n, planned, "recips", limits and limits["plan"], planned_cpu)

        SimulatorBackend.max_batch = args.batch
        if args.simulator_state == "memory":
            state = MemoryState()
            SimulatorBackend.cache = property(lambda self: state)
        backend = SimulatorBackend(credentials=account.credentials, account_key=str(account.pk))
        runs = 0
        start = mark()
        while True:
            runs += 1
            run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
            if run.state != "slice_over":
                break
        seconds = time.perf_counter() - start
        dispatch_cpu = cpu_since_mark()
        sent = Message.objects.filter(campaign=campaign, status="sent").count()
        stage("dispatch", sent, seconds, "msgs", limits and limits["dispatch"], dispatch_cpu)
        print(f"{'':<13} {runs} run(s), final state {run.state!r}")

        rows = Message.objects.filter(campaign=campaign).order_by("pk")
        last = 0
        applied = 0
        start = mark()
        while True:
            chunk = list(rows.filter(pk__gt=last).values_list("pk", "provider_ref")[:5000])
            if not chunk:
                break
            last = chunk[-1][0]
            result = statuses_apply(
                account=account,
                updates=[
                    StatusUpdate(
                        status=DeliveryStatus.DELIVERED, provider_ref=ref, raw_status="DELIVERED"
                    )
                    for _, ref in chunk
                ],
            )
            applied += result["applied"]
        stage(
            "status apply",
            applied,
            time.perf_counter() - start,
            "updates",
            limits and limits["status"],
            cpu_since_mark(),
        )

        campaign.refresh_from_db()
        by_status = dict(
            Message.objects.filter(campaign=campaign)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        print(
            f"campaign {campaign.status}: {by_status}; delivered_count "
            f"{campaign.delivered_count}, charged {campaign.credits_charged}, "
            f"reserved {campaign.credits_reserved}"
        )


if __name__ == "__main__":
    main()
