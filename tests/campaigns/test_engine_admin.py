"""The campaign engine through the admin: a whole campaign on the simulator
driven by the changelist actions and the campaign page's buttons."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from campaigns import tasks
from campaigns.engine import campaign_dispatch
from campaigns.models import Campaign, CampaignEvent, Message
from providers.backends.simulator import SimulatorBackend
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = pytest.mark.django_db
C = Campaign.Status
CHANGELIST = reverse("admin:campaigns_campaign_changelist")


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def action(client, name, campaigns, **extra):
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [c.pk for c in campaigns], "index": 0, **extra},
        follow=True,
    )


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def account(make_account):
    return make_account(
        balance=Decimal("500"),
        credentials={"seed": 11, "delivery_delay": 0, "mix": {"delivered": 0.8, "expired": 0.2}},
        requests_per_second=0,
        messages_per_second=50,  # batches of 50
    )


def test_full_lifecycle_through_the_admin_on_the_simulator(
    client, operator, account, enqueued, clock
):
    client.force_login(operator)
    phones = new_phones(120)
    campaign = make_campaign(account=account, phones=phones, user=operator)

    # Send now: the action shows the confirmation page with the quote.
    page = client.post(
        CHANGELIST, {"action": "action_send_now", "_selected_action": [campaign.pk], "index": 0}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="confirm-recipients">120<' in html
    assert 'class="confirm-credits">120.00 credits<' in html
    assert Campaign.objects.get(pk=campaign.pk).status == C.DRAFT  # nothing yet

    # Confirm with the figures shown.
    done = action(
        client,
        "action_send_now",
        [campaign],
        confirm="yes",
        **{f"quote-{campaign.pk}-recipients": "120", f"quote-{campaign.pk}-credits": "120.00"},
    )
    assert any("Sending:" in t for t in texts(done))
    campaign.refresh_from_db()
    assert campaign.status == C.SCHEDULED and campaign.credits_reserved == Decimal("120.00")
    assert enqueued[-1] == (campaign.pk, enqueued[-1][1])

    # The worker sends one batch, then staff pause from the campaign page.
    campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
    page = client.get(change_url(campaign))
    html = page.content.decode()
    assert "50 of 120 recipients" in html
    assert reverse("admin:campaigns_campaign_operate", args=[campaign.pk, "pause"]) in html
    client.post(reverse("admin:campaigns_campaign_operate", args=[campaign.pk, "pause"]))
    campaign.refresh_from_db()
    assert campaign.status == C.PAUSED
    assert tasks.dispatch_campaign(campaign.pk).startswith("paused")

    # Resume from the changelist; the worker finishes.
    action(client, "action_resume", [campaign])
    while not tasks.dispatch_campaign(campaign.pk).startswith("done"):
        pass
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.sent_count == 120
    assert sorted(Message.objects.filter(campaign=campaign).values_list("phone", flat=True)) == (
        sorted(phones)
    )

    # Delivery reports come back through the polling task.
    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
    )
    assert tasks.poll_statuses(backend=later) == 120
    campaign.refresh_from_db()
    assert campaign.delivered_count + campaign.failed_count == 120
    assert campaign.failed_count > 0  # expired ones, refunded
    account.refresh_from_db()
    assert account.balance == Decimal("500") - campaign.delivered_count
    assert account.reserved == 0
    assert_books_balance(account)
    assert_campaign_consistent(campaign)

    # Cancelling a finished campaign is refused on the confirmation page, not a crash.
    refused = action(client, "action_cancel", [campaign])
    assert refused.status_code == 200
    assert "It is completed: it will not be changed." in refused.content.decode()
    assert list(
        CampaignEvent.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("action", "user__username")
    ) == [
        ("send_now", "op"),
        ("start", None),
        ("plan", None),
        ("pause", "op"),
        ("resume", "op"),
        ("complete", None),
    ]


def test_schedule_from_the_campaign_page(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(3))
    url = reverse("admin:campaigns_campaign_schedule", args=[campaign.pk])
    assert url in client.get(change_url(campaign)).content.decode()

    page = client.get(url)
    assert page.status_code == 200 and b'type="datetime-local"' in page.content

    when = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    response = client.post(
        url,
        {
            "confirm": "yes",
            "when": when.strftime("%Y-%m-%dT%H:%M"),
            f"quote-{campaign.pk}-recipients": "3",
            f"quote-{campaign.pk}-credits": "3.00",
        },
    )
    assert response.status_code == 302 and response.url == change_url(campaign)
    campaign.refresh_from_db()
    assert campaign.status == C.SCHEDULED and campaign.scheduled_at == when
    assert enqueued[-1] == (campaign.pk, when)


def test_a_past_schedule_time_is_refused_with_a_message(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(1))
    response = client.post(
        reverse("admin:campaigns_campaign_schedule", args=[campaign.pk]),
        {"confirm": "yes", "when": "2020-01-01T10:00"},
        follow=True,
    )
    assert any("not in the future" in t for t in texts(response))
    assert Campaign.objects.get(pk=campaign.pk).status == C.DRAFT


def test_mixed_selection_is_handled_per_campaign(client, operator, account, enqueued):
    client.force_login(operator)
    draft = make_campaign(account=account, phones=new_phones(2))
    done = make_campaign(account=account, phones=new_phones(2))
    Campaign.objects.filter(pk=done.pk).update(status=C.COMPLETED)
    response = action(client, "action_pause", [draft, done])
    assert response.status_code == 200
    messages = texts(response)
    assert sum("was not changed" in t for t in messages) == 2

    page = client.post(
        CHANGELIST,
        {"action": "action_send_now", "_selected_action": [draft.pk, done.pk], "index": 0},
    )
    html = page.content.decode()
    assert "It is completed: it will not be changed." in html
    assert 'class="confirm-recipients">2<' in html


def test_the_send_permission_is_required(client, account):
    user = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="campaigns", codename__in=["view_campaign", "change_campaign"]
        )
    )
    client.force_login(user)
    campaign = make_campaign(account=account, phones=new_phones(1))

    changelist = client.get(CHANGELIST).content.decode()
    assert "action_send_now" not in changelist
    assert client.get(reverse("admin:campaigns_campaign_send", args=[campaign.pk])).status_code == (
        403
    )
    assert (
        client.post(
            reverse("admin:campaigns_campaign_operate", args=[campaign.pk, "cancel"])
        ).status_code
        == 403
    )
    page = client.get(change_url(campaign)).content.decode()
    assert "permission to send" in page or "send campaigns" in page
    assert Campaign.objects.get(pk=campaign.pk).status == C.DRAFT


def test_a_sent_campaign_cannot_be_edited_and_saving_keeps_engine_fields(
    client, operator, account, enqueued
):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(2))
    from campaigns.services import campaign_send_now

    campaign_send_now(campaign=campaign, user=operator)
    page = client.get(change_url(campaign))
    form = page.context["adminform"].form
    assert "body" not in form.fields and "lists" not in form.fields
    # The engine moves on while the page is open...
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SENDING, sent_count=2)
    response = client.post(
        change_url(campaign),
        {
            "name": "Renamed",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
            "events-MIN_NUM_FORMS": "0",
            "events-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert (campaign.status, campaign.sent_count) == (C.SENDING, 2)  # not written back


def test_unknown_messages_are_decided_from_the_message_list(
    client, operator, account, enqueued, clock
):
    from campaigns import engine
    from campaigns.engine import batch_claim, batches_recover
    from campaigns.services import campaign_send_now
    from tests.campaigns.engine_helpers import BlindBackend

    campaign = make_campaign(account=account, phones=new_phones(3))
    campaign_send_now(campaign=campaign, user=operator)
    backend = BlindBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch_claim(campaign=campaign, size=3)  # the worker dies holding them
    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    batches_recover(backend=backend)
    unknown = list(Message.objects.filter(campaign=campaign).order_by("pk"))
    assert {m.status for m in unknown} == {"unknown"}

    client.force_login(operator)
    response = client.post(
        reverse("admin:campaigns_message_changelist"),
        {"action": "resolve_failed", "_selected_action": [unknown[0].pk], "index": 0},
        follow=True,
    )
    assert any("1 message(s) marked failed" in t for t in texts(response))
    response = client.post(
        reverse("admin:campaigns_message_changelist"),
        {"action": "resolve_sent", "_selected_action": [m.pk for m in unknown], "index": 0},
        follow=True,
    )
    messages = texts(response)
    assert any("2 message(s) marked sent" in t for t in messages)
    assert any("1 selected message(s) were not unknown" in t for t in messages)
    campaign.refresh_from_db()
    assert (campaign.failed_count, campaign.sent_count, campaign.unknown_count) == (1, 2, 0)
    assert campaign.credits_charged == Decimal("2.00")
    assert_books_balance(account)
    assert_campaign_consistent(campaign)
