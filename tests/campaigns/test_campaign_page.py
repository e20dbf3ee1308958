"""The campaign page as staff see it: top first (state, progress, funnel,
buttons), live parts that stop polling when nothing can change, the report,
scheduling only through the confirmed action in a chosen zone, cancel and
resend behind confirmation pages, delete only where it can succeed, and
styled 403/404 pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from campaigns import tasks
from campaigns.campaign_page import campaign_live
from campaigns.dispatch import campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.services import campaign_send_now
from providers.backends.simulator import SimulatorBackend
from tests.campaigns.engine_helpers import make_campaign, new_phones

pytestmark = pytest.mark.django_db
C = Campaign.Status
S = Message.Status


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def live_url(campaign):
    return reverse("admin:campaigns_campaign_live", args=[campaign.pk])


@pytest.fixture
def account(make_account):
    return make_account(
        balance=Decimal("500"),
        credentials={"seed": 5, "delivery_delay": 0, "mix": {"delivered": 0.7, "expired": 0.3}},
        requests_per_second=0,
        messages_per_second=50,
    )


def _sent(account, operator, n=20) -> Campaign:
    """A campaign sent on the simulator, handed over entirely, no receipts yet."""
    campaign = make_campaign(account=account, phones=new_phones(n))
    campaign_send_now(campaign=campaign, user=operator)
    while not tasks.dispatch_campaign(campaign.pk).startswith("done"):
        pass
    campaign.refresh_from_db()
    return campaign


def _receipts(account) -> int:
    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
    )
    return tasks.poll_statuses(backend=later)


def test_the_add_form_has_no_schedule_progress_or_history(client, operator):
    client.force_login(operator)
    html = client.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert 'name="scheduled_at"' not in html  # only the confirmed Schedule action sets it
    assert "Progress" not in html
    assert 'id="events-group"' not in html  # no empty history
    assert "campaign-live" not in html


def test_saving_the_form_never_schedules(client, operator, account):
    # The issue: "Scheduled at" could be filled and saved; the campaign stayed Draft forever.
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(1))
    client.post(
        change_url(campaign),
        {
            "name": "Renamed",
            "account": account.pk,
            "sender": "Shop",
            "body": campaign.body,
            "lists": list(campaign.lists.values_list("pk", flat=True)),
            "extra_numbers": "",
            "scheduled_at_0": "2030-01-01",
            "scheduled_at_1": "10:00",
            "scheduled_at": "2030-01-01 10:00",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert campaign.scheduled_at is None and campaign.status == C.DRAFT


def test_the_top_of_the_page_comes_first_with_the_buttons_of_the_state(
    client, operator, account, enqueued, clock
):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(120))
    html = client.get(change_url(campaign)).content.decode()
    top = html.index('id="campaign-live"')
    assert top < html.index('id="campaign_form"') < html.index('id="campaign-quote"')
    assert reverse("admin:campaigns_campaign_send", args=[campaign.pk]) in html[top:]
    assert reverse("admin:campaigns_campaign_cancel", args=[campaign.pk]) in html

    campaign_send_now(campaign=campaign, user=operator)
    html = client.get(change_url(campaign)).content.decode()
    # Right after "send now": no Send now… / Schedule… buttons any more.
    assert "Send now…" not in html and "Schedule…" not in html
    campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
    html = client.get(change_url(campaign)).content.decode()
    assert "50 of 120 recipients" in html
    assert 'data-count="awaiting">50<' in html and 'data-count="waiting">70<' in html
    assert reverse("admin:campaigns_campaign_operate", args=[campaign.pk, "pause"]) in html
    assert f"?campaign__id__exact={campaign.pk}" in html  # messages and replies links
    assert '<fieldset class="module aligned">\n    <h2>Progress' not in html


def test_the_live_part_polls_until_nothing_can_change(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = _sent(account, operator)
    live = client.get(live_url(campaign)).content.decode()
    # Completed, but the receipts are still out: says so and keeps polling.
    assert "Sent — awaiting 20 receipts" in live
    assert 'hx-trigger="every 2s"' in live

    assert _receipts(account) == 20
    live = client.get(live_url(campaign)).content.decode()
    assert "Completed" in live and "awaiting 0" not in live
    assert "hx-trigger" not in live  # final: polling stops
    campaign.refresh_from_db()
    assert f'data-count="delivered">{campaign.delivered_count}<' in live


def test_the_changelist_tells_the_truth_about_receipts(client, operator, account, enqueued):
    client.force_login(operator)
    _sent(account, operator, n=30)
    html = client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "Sent — awaiting 30 receipts" in html
    assert "Awaiting receipt" in html


def test_the_report_groups_failures_countries_and_credits(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = _sent(account, operator, n=20)
    _receipts(account)
    campaign.refresh_from_db()
    assert campaign.failed_count > 0
    html = client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content
    html = html.decode()
    assert "<polyline" in html  # the SVG chart
    assert "Expired" in html  # failures by provider outcome
    assert "Australia" in html and f">{campaign.recipients_total}<" in html
    assert 'data-credits="reserved">20.00<' in html
    assert f'data-credits="refunded">{campaign.failed_count}.00<' in html
    assert f'data-credits="net">{campaign.delivered_count}.00<' in html
    assert "hx-trigger" not in html  # final: the report stops refreshing


def test_a_sending_campaign_nobody_works_on_is_shown_as_stalled(account, operator, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(3))
    campaign_send_now(campaign=campaign, user=operator)
    long_ago = timezone.now() - timedelta(minutes=10)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=C.SENDING, started_at=long_ago, dispatch_lease_until=long_ago
    )
    campaign = Campaign.objects.select_related("account").get(pk=campaign.pk)
    stall = campaign_live(campaign).stall
    assert stall.startswith("Stalled: recipients were never planned")

    # A scheduled campaign long overdue: no worker is running.
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SCHEDULED, scheduled_at=long_ago)
    campaign = Campaign.objects.select_related("account").get(pk=campaign.pk)
    assert "no worker is running" in campaign_live(campaign).stall


def test_a_schedule_set_in_sydney_time_is_kept_and_shown_in_sydney_time(
    client, operator, account, enqueued
):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(2))
    url = reverse("admin:campaigns_campaign_schedule", args=[campaign.pk])
    page = client.get(url).content.decode()
    assert 'name="time_zone"' in page and 'value="UTC" selected' in page  # the account's zone

    year = timezone.now().year + 1
    response = client.post(
        url,
        {
            "confirm": "yes",
            "when": f"{year}-01-10T09:00",
            "time_zone": "Australia/Sydney",
            f"quote-{campaign.pk}-recipients": "2",
            f"quote-{campaign.pk}-credits": "2.00",
        },
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    # 09:00 in Sydney (summer, UTC+11) is 22:00 UTC the day before.
    assert campaign.scheduled_at == datetime(year, 1, 9, 22, 0, tzinfo=UTC)
    assert campaign.schedule_time_zone == "Australia/Sydney"
    html = client.get(change_url(campaign)).content.decode()
    assert f"10 Jan {year}, 09:00 AEDT (Australia/Sydney)" in html


def test_a_time_that_does_not_exist_in_the_zone_is_refused(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(1))
    year = timezone.now().year + 1
    # Sydney's clocks jump from 02:00 to 03:00 on the first Sunday of October.
    first_sunday = next(
        d for d in (datetime(year, 10, day) for day in range(1, 8)) if d.weekday() == 6
    )
    response = client.post(
        reverse("admin:campaigns_campaign_schedule", args=[campaign.pk]),
        {
            "confirm": "yes",
            "when": f"{first_sunday:%Y-%m-%d}T02:30",
            "time_zone": "Australia/Sydney",
        },
    )
    assert response.status_code == 200
    assert "does not exist in Australia/Sydney" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == C.DRAFT


def test_cancel_asks_first_and_says_what_is_released(client, operator, account, enqueued, clock):
    client.force_login(operator)
    campaign = make_campaign(account=account, phones=new_phones(120))
    campaign_send_now(campaign=campaign, user=operator)
    campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
    url = reverse("admin:campaigns_campaign_cancel", args=[campaign.pk])

    page = client.get(url).content.decode()
    assert "<strong>70</strong> messages not yet sent will be cancelled" in page
    assert "<strong>70.00</strong> reserved credits go back" in page
    assert "50 messages already at the provider stay sent and charged" in page
    assert "cannot be undone" in page
    assert Campaign.objects.get(pk=campaign.pk).status == C.SENDING  # asking changed nothing

    # The old one-click path is gone.
    direct = client.post(reverse("admin:campaigns_campaign_operate", args=[campaign.pk, "cancel"]))
    assert direct.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == C.SENDING

    response = client.post(url, {"confirm": "yes"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == C.CANCELLED and campaign.cancelled_count == 70


def test_resend_to_temporary_failures_makes_a_new_draft(client, operator, account, enqueued):
    client.force_login(operator)
    campaign = _sent(account, operator, n=20)
    _receipts(account)
    first = Message.objects.filter(campaign=campaign).first()
    Message.objects.filter(pk=first.pk).update(status=S.REJECTED)  # a refusal: left out
    expired = set(
        Message.objects.filter(campaign=campaign, status=S.EXPIRED).values_list("phone", flat=True)
    )
    assert expired
    html = client.get(change_url(campaign)).content.decode()
    url = reverse("admin:campaigns_campaign_resend", args=[campaign.pk])
    assert url in html
    page = client.get(url).content.decode()
    assert f"<strong>{len(expired)}</strong> recipient" in page
    assert "left out" in page

    response = client.post(url, {"confirm": "yes"})
    new = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response.status_code == 302 and response.url == change_url(new)
    assert new.status == C.DRAFT and new.credits_reserved == 0
    assert set(new.extra_numbers.split("\n")) == expired
    assert (new.account, new.body, new.sender) == (campaign.account, campaign.body, campaign.sender)


def test_delete_is_offered_only_where_it_can_succeed(client, operator, superuser, account):
    client.force_login(superuser)
    fresh = make_campaign(account=account, phones=new_phones(1))
    sent = make_campaign(account=account, phones=new_phones(1))
    campaign_send_now(campaign=sent, user=superuser)

    assert "deletelink" in client.get(change_url(fresh)).content.decode()
    assert "deletelink" not in client.get(change_url(sent)).content.decode()
    delete = reverse("admin:campaigns_campaign_delete", args=[sent.pk])
    assert client.get(delete).status_code == 403
    changelist = client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "delete_selected" not in changelist


def test_403_and_404_are_styled_with_a_way_back(client, account):
    user = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="campaigns", codename="view_campaign")
    )
    client.force_login(user)
    campaign = make_campaign(account=account, phones=new_phones(1))

    denied = client.get(
        reverse("admin:campaigns_campaign_send", args=[campaign.pk]),
        HTTP_REFERER=f"http://testserver{change_url(campaign)}",
    )
    assert denied.status_code == 403
    html = denied.content.decode()
    assert 'id="site-name"' in html  # inside the admin look
    assert "permission to send campaigns" in html
    assert f'href="http://testserver{change_url(campaign)}">Go back' in html

    missing = client.get("/admin/campaigns/campaign/999999/live/")
    assert missing.status_code == 404
    html = missing.content.decode()
    assert 'id="site-name"' in html and "Go back" in html
    assert 'href="/admin/">Go back' in html  # no referer: home


def test_the_counter_measures_the_template_when_the_body_is_empty(client, operator):
    from campaigns.models import MessageTemplate

    client.force_login(operator)
    template = MessageTemplate.objects.create(name="Promo", body="Hello there, 20% off today")
    data = client.post(
        reverse("admin:campaigns_campaign_measure"), {"text": "", "template": template.pk}
    ).json()
    assert data["characters"] == len(template.body) and data["segments"] == 1
    assert data["source"] == "template"
    typed = client.post(
        reverse("admin:campaigns_campaign_measure"), {"text": "Hi", "template": template.pk}
    ).json()
    assert (typed["characters"], typed["source"]) == (2, "text")


def test_the_messages_and_replies_links_open_filtered_lists(client, superuser, account):
    client.force_login(superuser)
    campaign = make_campaign(account=account, phones=new_phones(1))
    Campaign.objects.filter(pk=campaign.pk).update(status=C.COMPLETED)  # a draft has none
    html = client.get(change_url(campaign)).content.decode()
    for name in ("message", "inboundmessage"):
        url = reverse(f"admin:campaigns_{name}_changelist") + f"?campaign__id__exact={campaign.pk}"
        assert url in html
        assert client.get(url).status_code == 200


def test_the_audit_trail_reads_in_words(client, superuser, account, enqueued):
    client.force_login(superuser)
    campaign = make_campaign(account=account, phones=new_phones(1))
    campaign_send_now(campaign=campaign, user=superuser)
    html = client.get(reverse("admin:campaigns_campaignevent_changelist")).content.decode()
    assert "Sent now" in html and "Draft → Scheduled" in html
    assert "send_now draft" not in html
    page = client.get(change_url(campaign)).content.decode()
    assert "Sent now" in page and "Draft → Scheduled" in page


def test_a_large_campaigns_report_is_cached_and_says_how_old_it_is(
    client, operator, account, enqueued, monkeypatch
):
    from campaigns import campaign_page

    client.force_login(operator)
    campaign = _sent(account, operator, n=5)
    monkeypatch.setattr(campaign_page, "REPORT_CACHE_ABOVE", 0)  # "large" from 1 message
    url = reverse("admin:campaigns_campaign_report", args=[campaign.pk])
    first = client.get(url).content.decode()
    assert "Figures as of" in first and 'hx-trigger="every 30s"' in first
    assert 'data-credits="charged">5.00<' in first
    Message.objects.filter(campaign=campaign).update(raw_error="changed")  # not seen...
    assert client.get(url).content.decode() == first  # ...the cached report is served

    _receipts(account)  # final now: rebuilt once, with the refunds, and no more polling
    campaign.refresh_from_db()
    final = client.get(url).content.decode()
    assert "hx-trigger" not in final
    assert f'data-credits="refunded">{campaign.failed_count}.00<' in final


def test_a_campaign_through_a_provider_without_receipts_never_reads_awaiting(
    client, operator, account, enqueued
):
    # FullSMS documents no delivery report: "awaiting 20 receipts" and a page
    # polling for them forever would be untrue.
    client.force_login(operator)
    campaign = _sent(account, operator)
    account.backend = "fullsms"
    account.save(update_fields=["backend"])

    live = client.get(live_url(campaign)).content.decode()
    assert "Completed — 20 sent, no delivery reports from FullSMS" in live
    assert "awaiting receipt" not in live.lower()
    assert "Sent, no delivery reports" in live and 'data-count="awaiting">20<' in live
    assert "hx-trigger" not in live  # final: polling stops
    html = client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "Completed — 20 sent, no delivery reports from FullSMS" in html
    assert "awaiting 20" not in html
