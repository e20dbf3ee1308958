"""The simulator's provider balance agrees with our ledger, so ``credits_reconcile``
on a demo account shows no drift: after ``seed_demo``, and after its campaign
went out and its delivery reports (with refunds) came back."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from providers.backends.simulator import SimulatorBackend
from providers.models import CreditTransaction, ProviderAccount
from providers.services import credits_reconcile

pytestmark = pytest.mark.django_db


def test_seed_demo_leaves_no_drift_on_any_simulator_account():
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # run twice: still nothing added twice
    for account in ProviderAccount.objects.filter(backend="simulator"):
        drift = credits_reconcile(account=account)
        assert (account.name, drift.difference) == (account.name, Decimal(0))


def test_the_demo_campaign_with_its_reports_leaves_no_drift(monkeypatch):
    from campaigns import tasks
    from campaigns.engine import enqueue as engine_enqueue
    from campaigns.models import Campaign, Message
    from campaigns.services import campaign_send_now

    monkeypatch.setattr(engine_enqueue, "_enqueue", lambda campaign_id, at: None)
    call_command("seed_demo", stdout=StringIO())
    account = ProviderAccount.objects.get(name="Simulator")
    campaign = Campaign.objects.get(name="Welcome (demo)")
    campaign_send_now(campaign=campaign, user=get_user_model().objects.get(username="admin"))
    for _ in range(20):
        if tasks.dispatch_campaign(campaign.pk).startswith("done"):
            break
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.sent_count == 20
    # The demo prices the UK at 2 credits per segment; the simulator charges the same.
    uk = Message.objects.get(campaign=campaign, phone__startswith="+44")
    assert uk.credits == 2 * uk.segments
    assert credits_reconcile(account=account).difference == 0

    # An hour later every outcome is final; the refunds land on both sides.
    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
        mix={"delivered": 0.5, "undelivered": 0.3, "expired": 0.2},
    )
    assert tasks.poll_statuses(backend=later) == 20
    assert CreditTransaction.objects.filter(account=account, kind="refund").exists()
    assert credits_reconcile(account=account, backend=later).difference == 0
