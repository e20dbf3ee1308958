"""The admin index dashboard: its figures equal the messages and the ledger."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from campaigns import tasks
from campaigns.daily import daily_deltas
from campaigns.dashboard import dashboard_figures
from campaigns.models import Campaign, CampaignDay, Message
from campaigns.services import campaign_send_now
from providers.backends.simulator import SimulatorBackend
from providers.models import CreditTransaction
from tests.campaigns.engine_helpers import make_campaign, new_phones

pytestmark = pytest.mark.django_db
S = Message.Status
FAILED = (S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED)


def _run_on_simulator(account, *, recipients: int, user) -> Campaign:
    """Send a campaign through the simulator and apply its receipts."""
    campaign = make_campaign(account=account, phones=new_phones(recipients))
    campaign_send_now(campaign=campaign, user=user)
    tasks.dispatch_campaign(campaign.pk)
    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
    )
    tasks.poll_statuses(backend=later)
    campaign.refresh_from_db()
    return campaign


def _simulator_account(make_account, **fields):
    return make_account(
        balance=Decimal("500"),
        credentials={
            "seed": 11,
            "delivery_delay": 0,
            "mix": {"delivered": 0.7, "undelivered": 0.3},
        },
        requests_per_second=0,
        messages_per_second=0,
        **fields,
    )


def test_deltas_count_what_happened_not_where_it_stands():
    assert daily_deltas({(S.SUBMITTING, S.SENT): 5}) == (5, 0, 0)
    assert daily_deltas({(S.SENT, S.DELIVERED): 4, (S.SENT, S.UNDELIVERED): 1}) == (0, 4, 1)
    # Straight to delivered from the send answer: sent and delivered at once.
    assert daily_deltas({(S.SUBMITTING, S.DELIVERED): 2}) == (2, 2, 0)
    # Refused at send: failed, never handed over.
    assert daily_deltas({(S.SUBMITTING, S.FAILED): 3, (S.QUEUED, S.SKIPPED): 9}) == (0, 0, 3)
    # A late correction from one failure to another is not a new failure.
    assert daily_deltas({(S.EXPIRED, S.UNDELIVERED): 1, (S.QUEUED, S.SUBMITTING): 7}) == (0, 0, 0)


def test_dashboard_figures_equal_the_messages_and_the_ledger(make_account, superuser, enqueued):
    account = _simulator_account(make_account)
    first = _run_on_simulator(account, recipients=40, user=superuser)
    second = _run_on_simulator(account, recipients=25, user=superuser)
    messages = Message.objects.filter(campaign__in=[first, second])

    d = dashboard_figures(user=superuser)

    assert d.today.sent == messages.filter(sent_at__isnull=False).count() == 65
    assert d.today.delivered == messages.filter(status=S.DELIVERED).count()
    assert d.today.failed == messages.filter(status__in=FAILED).count()
    assert 0 < d.today.failed < 65
    charged = CreditTransaction.objects.filter(
        account=account, kind__in=["charge", "refund"]
    ).aggregate(t=Sum("amount"))["t"]
    assert d.today.credits == -charged
    first.refresh_from_db()
    second.refresh_from_db()
    # The campaigns' own figure (net of refunds) says the same.
    assert d.today.credits == first.credits_charged + second.credits_charged
    assert d.month.sent >= d.today.sent
    assert d.days[-1].sent == 65 and d.days[-1].day == timezone.localdate()
    assert sum(day.sent for day in d.days) == 65


def test_rebuild_reproduces_the_live_rows(make_account, superuser, enqueued):
    account = _simulator_account(make_account)
    _run_on_simulator(account, recipients=30, user=superuser)
    live = {
        (r.campaign_id, r.day): (r.sent, r.delivered, r.failed) for r in CampaignDay.objects.all()
    }

    call_command("dashboard_rebuild")

    rebuilt = {
        (r.campaign_id, r.day): (r.sent, r.delivered, r.failed) for r in CampaignDay.objects.all()
    }
    assert rebuilt == live


def test_a_reseller_sees_only_its_own_accounts(make_account, make_reseller, superuser, enqueued):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    mine = _simulator_account(make_account, owners=[alice], low_balance_threshold=Decimal("1000"))
    theirs = _simulator_account(make_account, owners=[bob], low_balance_threshold=Decimal("1000"))
    _run_on_simulator(mine, recipients=10, user=superuser)
    _run_on_simulator(theirs, recipients=20, user=superuser)

    d = dashboard_figures(user=alice)

    assert d.today.sent == 10
    assert [a.pk for a in d.low_balance] == [mine.pk]
    assert d.failed_tasks_24h is None  # not hers to see
    assert dashboard_figures(user=superuser).today.sent == 30


def test_an_operator_sees_every_account_s_figures_not_zeros(
    make_account, make_reseller, operator, superuser, enqueued
):
    # Operators run every campaign (the campaign pages are not scoped by
    # account) but own no account: their dashboard read 0 sent, 0 credits.
    alice = make_reseller("alice")
    _run_on_simulator(
        _simulator_account(make_account, owners=[alice]), recipients=10, user=superuser
    )
    _run_on_simulator(_simulator_account(make_account), recipients=5, user=superuser)

    d = dashboard_figures(user=operator)

    assert d.today.sent == 15 == dashboard_figures(user=superuser).today.sent


def test_sending_now_and_next_scheduled(make_account, superuser):
    account = _simulator_account(make_account)
    sending = make_campaign(account=account, phones=new_phones(3))
    Campaign.objects.filter(pk=sending.pk).update(
        status=Campaign.Status.SENDING, recipients_total=10, queued_count=4
    )
    later = make_campaign(account=account, phones=new_phones(2))
    Campaign.objects.filter(pk=later.pk).update(
        status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1)
    )

    d = dashboard_figures(user=superuser)

    assert [(p.campaign.pk, p.handled, p.total, p.percent) for p in d.active] == [
        (sending.pk, 6, 10, 60)
    ]
    assert [c.pk for c in d.scheduled] == [later.pk]


def test_the_admin_index_shows_the_dashboard(client, make_account, superuser, enqueued):
    account = _simulator_account(make_account)
    campaign = _run_on_simulator(account, recipients=12, user=superuser)
    client.force_login(superuser)

    page = client.get(reverse("admin:index")).content.decode()

    assert "How are we doing" in page
    assert 'data-figure="today-sent">12<' in page
    delivered = campaign.delivered_count
    assert f'data-figure="today-delivered">{delivered}<' in page
    assert "<svg" in page and "12 sent" in page  # the chart's tooltip for today


def test_the_panel_refreshes_alone_and_only_for_staff(client, make_account, superuser, enqueued):
    account = _simulator_account(make_account)
    _run_on_simulator(account, recipients=7, user=superuser)
    url = reverse("dashboard-panel")

    assert client.get(url).status_code == 302  # to the login page

    client.force_login(superuser)
    panel = client.get(url).content.decode()
    assert 'data-figure="today-sent">7<' in panel
    assert f'hx-get="{url}"' in panel and "<html" not in panel
