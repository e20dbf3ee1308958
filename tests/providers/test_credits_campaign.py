"""A campaign's credits from the ledger: charged, refunded and net, each
exact, and every row of the campaign found by its reference."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import reverse

from campaigns.models import Message
from campaigns.reports import statuses_apply
from providers.backends.base import DeliveryStatus
from providers.models import CreditTransaction
from providers.services import credits_charge, credits_for_reference, credits_reserve
from tests.campaigns.test_reports import BACKENDS, make_campaign, make_messages, report

pytestmark = pytest.mark.django_db

D = Decimal
DS = DeliveryStatus


@pytest.fixture(autouse=True)
def _backends():
    with override_settings(SMS_BACKENDS=BACKENDS):
        yield


def test_charged_refunded_and_net_are_exact_and_every_row_has_the_campaign_reference(
    make_account, superuser, client
):
    """The issue: the page said "Credits charged 60.00" after 12.00 was
    refunded, and the refund rows could not be found by the campaign."""
    account = make_account(balance=D("100"), backend="refunding")
    campaign = make_campaign(account, credits_charged=D("60"))  # as the engine records it
    reference = f"campaign:{campaign.pk}"
    credits_reserve(account=account, amount=60, reference=reference)
    credits_charge(account=account, amount=60, reference=reference)
    messages = make_messages(campaign, 10, credits="6")
    statuses_apply(
        account=account,
        updates=[report(messages[0], DS.UNDELIVERED), report(messages[1], DS.EXPIRED)],
    )
    assert Message.objects.filter(status__in=["undelivered", "expired"]).count() == 2

    found = CreditTransaction.objects.filter(account=account, reference=reference)
    assert sorted(found.values_list("kind", flat=True)) == ["charge", "refund", "reserve"]
    totals = credits_for_reference(account_id=account.pk, reference=reference)
    assert (totals.charged, totals.refunded, totals.net, totals.reserved) == (
        D("60.00"),
        D("12.00"),
        D("48.00"),
        D("0.00"),
    )
    client.force_login(superuser)
    # The campaign page's report (loaded by htmx) shows the same three figures.
    report_page = client.get(
        reverse("admin:campaigns_campaign_report", args=[campaign.pk])
    ).content.decode()
    assert 'data-credits="charged">60.00<' in report_page
    assert 'data-credits="refunded">12.00<' in report_page
    assert 'data-credits="net">48.00<' in report_page
    campaign.refresh_from_db()
    assert campaign.credits_charged == totals.net  # net of refunds, like resolve_unknown
    # Searching the ledger for the campaign finds the refund too.
    ledger = client.get(reverse("admin:providers_credittransaction_changelist"), {"q": reference})
    assert {row.kind for row in ledger.context["cl"].result_list} == {
        "reserve",
        "charge",
        "refund",
    }
