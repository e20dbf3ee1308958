"""Benchmark: how long a campaign quote takes, and how much memory, as N grows.

    .venv/bin/python benchmarks/quote.py            # N = 100,000 (and N/4, N/2)
    .venv/bin/python benchmarks/quote.py --n 20000

Builds N contacts (with first names and a custom field) in two overlapping
lists, some opt-outs, a personalised body, on a fresh SQLite database in a
temporary directory (never the project's database), then prints for N/4,
N/2 and N: the quote time, peak Python memory during the quote (tracemalloc,
measured in a second run because tracing slows Python down), and the
figures of the quote itself. Target: < 3 s for 100,000 recipients, memory
flat as N grows. A second line per N quotes with per-country rates on the
account (the slower path that resolves each number's region).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dmitri", "Emma", "Fatima", "Giovanni", "Hannah", "Zoë"]
STORES = ["Parramatta", "Bondi Junction", "Chatswood", "Penrith"]


def setup_django(db_path: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.pop("REDIS_URL", None)
    from benchmarks.limits import production_settings

    production_settings()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def grow(total: int, *, done: int, lists) -> None:
    """Add contacts ``done``..``total`` (every 10th in both lists, every 50th opted out)."""
    from django.db import transaction

    from contacts.models import Contact, ListMembership, OptOut

    batch = 5000
    for start in range(done, total, batch):
        end = min(total, start + batch)
        with transaction.atomic():
            contacts = Contact.objects.bulk_create(
                Contact(
                    phone=f"+6141{i:07d}",
                    first_name=FIRST_NAMES[i % len(FIRST_NAMES)] if i % 7 else "",
                    last_name="Smith",
                    custom_fields={"store": STORES[i % len(STORES)]},
                )
                for i in range(start, end)
            )
            members = []
            for i, contact in zip(range(start, end), contacts, strict=True):
                members.append(ListMembership(contact=contact, contact_list=lists[i % 2]))
                if i % 10 == 0:
                    members.append(ListMembership(contact=contact, contact_list=lists[1 - i % 2]))
            ListMembership.objects.bulk_create(members)
            OptOut.objects.bulk_create(
                OptOut(phone=f"+6141{i:07d}") for i in range(start, end) if i % 50 == 0
            )


def timed_quote(campaign) -> tuple[float, object]:
    from campaigns.quote import campaign_quote

    start = time.perf_counter()
    quote = campaign_quote(campaign=campaign)
    return time.perf_counter() - start, quote


def peak_memory(campaign) -> float:
    from campaigns.quote import campaign_quote

    tracemalloc.start()
    campaign_quote(campaign=campaign)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="contacts at the last step")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsoffice-bench-") as tmp:
        setup_django(Path(tmp) / "bench.sqlite3")
        from campaigns.models import Campaign
        from contacts.models import ContactList
        from providers.models import ProviderAccount

        # A throw-away database: the balance is set directly, the ledger is not under test.
        account = ProviderAccount.objects.create(
            name="Bench", backend="simulator", balance=Decimal("10000000")
        )
        lists = [ContactList.objects.create(name=f"List {i}") for i in (1, 2)]
        campaign = Campaign.objects.create(
            name="Bench",
            account=account,
            sender="Bench",
            body=(
                "Hi {{ first_name|default:'there' }}, our {{ store }} store has 20% off "
                "everything this weekend only. Show this text at the counter. Reply STOP "
                "to opt out."
            ),
        )
        campaign.lists.set(lists)

        print(f"SQLite, personalised body, {os.cpu_count()} CPUs")
        print(
            f"{'contacts':>9} {'recipients':>10} {'seconds':>8} {'rec/s':>9} {'peak MB':>8}  quote"
        )
        done = 0
        for n in sorted({max(1, args.n // 4), max(1, args.n // 2), args.n}):
            grow(n, done=done, lists=lists)
            done = n
            for rates in ({}, {"AU": "1.50", "GB": "2"}):
                ProviderAccount.objects.filter(pk=account.pk).update(country_rates=rates)
                campaign = Campaign.objects.select_related("account", "template").get(
                    pk=campaign.pk
                )
                seconds, quote = timed_quote(campaign)
                peak = peak_memory(campaign)
                label = "country rates" if rates else "flat rate"
                print(
                    f"{n:>9,} {quote.recipients:>10,} {seconds:>8.2f} "
                    f"{quote.recipients / seconds:>9,.0f} {peak:>8.1f}  {label}: "
                    f"excluded {quote.excluded}, segments {quote.segments_distribution}, "
                    f"credits {quote.credits_needed}"
                )


if __name__ == "__main__":
    main()
