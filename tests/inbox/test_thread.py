"""The thread page of a conversation: both directions interleaved by time,
bounded with a keyset "load older", keyword actions and opt-out history in
words; reply, opt-out/opt-in with a reason and handled/open from the page,
errors in words with the typed text kept; the live part; the list's
keyword and opt-out columns and its "new replies" hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.inbox import conversation_opt_out
from campaigns.models import Campaign, Conversation, Message
from campaigns.reports import inbound_apply
from campaigns.thread import Cursor, thread_page
from contacts.models import Contact, OptOut, OptOutEvent
from providers.backends.base import InboundSms

pytestmark = pytest.mark.django_db
PHONE = "+61412300100"
T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)


def reply(account, body: str, ref: str, at: datetime, phone: str = PHONE):
    inbound_apply(
        account=account,
        messages=[InboundSms(from_number=phone, body=body, received_at=at, provider_ref=ref)],
    )
    return Conversation.objects.get(account=account, phone=phone)


def sent(account, body: str, at: datetime, *, status="delivered", name="Spring sale", phone=PHONE):
    campaign = Campaign.objects.create(name=name, account=account, body=body, status="completed")
    message = Message.objects.create(
        campaign=campaign, phone=phone, body=body, status=status, sent_at=at
    )
    Message.objects.filter(pk=message.pk).update(created_at=at)
    return message


def url(name: str, conversation: Conversation) -> str:
    return reverse(f"admin:campaigns_conversation_{name}", args=[conversation.pk])


def test_thread_interleaves_both_ways_oldest_first_in_words_and_marks_read(
    client, superuser, make_account
):
    account = make_account(balance=10)
    contact = Contact.objects.create(phone=PHONE, first_name="Ann")
    sent(account, "Spring sale: 20% off", T0)
    reply(account, "Is it on Sunday?", "r1", T0 + timedelta(minutes=5))
    sent(account, "Yes, 10 to 4", T0 + timedelta(minutes=6), status="sent", name="Reply")
    conversation = reply(account, "STOP", "r2", T0 + timedelta(minutes=9))
    # Another account's message to the same number is not this thread's.
    sent(make_account(), "Other tenant", T0 + timedelta(minutes=7), name="Other")
    assert conversation.unread_count == 2

    client.force_login(superuser)
    response = client.get(url("change", conversation))
    assert response.status_code == 200
    keys = [item.key.split("-")[0] for item in response.context["thread"].items]
    assert keys == ["out", "in", "out", "in"]
    page = response.content.decode()
    assert page.index("Spring sale: 20% off") < page.index("Is it on Sunday?")
    assert page.index("Is it on Sunday?") < page.index("Yes, 10 to 4") < page.index("STOP —")
    assert "Other tenant" not in page
    assert "Delivered" in page and "Sent, awaiting the delivery receipt" in page
    assert "STOP — opted out" in page
    assert "Ann" in page and reverse("admin:contacts_contact_change", args=[contact.pk]) in page
    assert "Opted out since" in page
    # The reply box says why it is disabled and cannot send.
    assert "has opted out: nothing can be sent to it" in page
    assert 'class="default thread-send" disabled' in page
    conversation.refresh_from_db()
    assert conversation.unread_count == 0


def test_a_busy_thread_pages_by_keyset_each_item_exactly_once(client, superuser, make_account):
    account = make_account()
    conversation = reply(account, "first", "r0", T0)
    for i in range(119):
        # Same second for pairs: the (time, kind, id) order breaks the ties.
        sent(account, f"m{i}", T0 + timedelta(seconds=1 + i // 2))
    client.force_login(superuser)
    page = client.get(url("change", conversation))
    thread = page.context["thread"]
    assert len(thread.items) == 50 and thread.older is not None
    seen = [i.key for i in thread.items]
    before = thread.older
    while before is not None:
        older = client.get(url("older", conversation), {"before": str(before)})
        assert older.status_code == 200
        chunk = older.context["thread"]
        seen = [i.key for i in chunk.items] + seen
        before = chunk.older
    assert len(seen) == len(set(seen)) == 120
    everything = thread_page(conversation, limit=1000).items
    assert seen == [i.key for i in everything]  # oldest first, nothing skipped


def test_a_bad_position_is_a_400_in_words_not_a_500(client, superuser, make_account):
    conversation = reply(make_account(), "hi", "r1", T0)
    client.force_login(superuser)
    for name, param in (("change", "before"), ("older", "before"), ("live", "start")):
        response = client.get(url(name, conversation), {param: "1.2.x'; drop"})
        assert response.status_code == 400
        assert b"is not a position in a thread" in response.content
    assert Cursor.parse(str(Cursor(T0, 1, 7))) == Cursor(T0, 1, 7)


def test_reply_from_the_thread_is_sent_and_shown_waiting_then_with_its_status(
    client, superuser, make_account
):
    from campaigns.tasks import dispatch_campaign

    account = make_account(balance=10)
    conversation = reply(account, "Open Sunday?", "r1", T0)
    client.force_login(superuser)
    response = client.post(url("reply", conversation), {"body": "Yes, 10 to 4"})
    assert response.status_code == 302
    campaign = Campaign.objects.get(kind=Campaign.Kind.REPLY)
    page = client.get(url("change", conversation)).content.decode()
    assert "Reply to +61412300100 sent (1.00 credit reserved)" in page
    assert "Waiting to be sent" in page and "Yes, 10 to 4" in page

    dispatch_campaign(campaign.pk)
    live = client.get(url("live", conversation)).content.decode()
    assert "Waiting to be sent" not in live
    assert 'data-status="sent"' in live and "Reply from the inbox" in live
    assert live.count("Yes, 10 to 4") == 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty", "The reply is empty"),
        ("opted_out", "has opted out"),
        ("no_credits", "needs 1.00 credits but Account 1 has 0.00 available"),
        ("inactive", "inactive"),
    ],
)
def test_a_refused_reply_says_why_keeps_the_text_and_writes_nothing(
    client, superuser, make_account, case, expected
):
    account = make_account(balance=0 if case == "no_credits" else 10)
    conversation = reply(account, "hello", "r1", T0)
    body = "" if case == "empty" else "Thanks — we'll call you"
    if case == "opted_out":
        OptOut.objects.create(phone=PHONE)
    if case == "inactive":
        account.is_active = False
        account.save()
    client.force_login(superuser)
    response = client.post(url("reply", conversation), {"body": body})
    assert response.status_code == 400
    page = response.content.decode()
    assert expected in page
    if body:
        assert "Thanks — we&#x27;ll call you" in page  # the typed text is kept
    assert not Campaign.objects.filter(kind=Campaign.Kind.REPLY).exists()


def test_opt_out_and_back_in_from_the_thread_with_a_reason_and_history(
    client, superuser, make_account
):
    conversation = reply(make_account(balance=5), "call me", "r1", T0)
    client.force_login(superuser)
    missing = client.post(url("optout", conversation), {"action": "opt_out", "out-reason": " "})
    assert missing.status_code == 400 and b"type a reason" in missing.content
    assert not OptOut.objects.exists()

    done = client.post(
        url("optout", conversation), {"action": "opt_out", "out-reason": "Asked by phone"}
    )
    assert done.status_code == 302
    optout = OptOut.objects.get(phone=PHONE)
    assert (optout.source, optout.reason, optout.created_by) == (
        "manual",
        "Asked by phone",
        superuser,
    )
    page = client.get(url("change", conversation)).content.decode()
    assert "Opted out since" in page and "Asked by phone" in page
    assert "Opted out</strong>: Opted out (entered by staff) — Asked by phone · by root" in page
    assert 'class="default thread-send" disabled' in page

    client.post(
        url("optout", conversation), {"action": "opt_in", "in-reason": "Wants offers again"}
    )
    assert not OptOut.objects.exists()
    removed = OptOutEvent.objects.get(action="removed")
    assert removed.created_by == superuser
    assert removed.reason.startswith("Wants offers again")
    assert removed.source_reference == f"conversation:{conversation.pk}"
    page = client.get(url("change", conversation)).content.decode()
    assert "Not opted out: messages can be sent." in page
    assert 'class="default thread-send" disabled' not in page


def test_mark_handled_and_open_from_the_thread(client, superuser, make_account):
    conversation = reply(make_account(), "hi", "r1", T0)
    client.force_login(superuser)
    client.post(url("handled", conversation), {"handled": "1"})
    conversation.refresh_from_db()
    assert conversation.handled and conversation.handled_by == superuser
    assert "Handled by root" in client.get(url("change", conversation)).content.decode()
    client.post(url("handled", conversation), {"handled": "0"})
    conversation.refresh_from_db()
    assert not conversation.handled
    assert client.get(url("handled", conversation)).status_code == 405


def test_live_part_brings_what_arrived_since_the_page_opened_and_marks_it_read(
    client, superuser, make_account
):
    account = make_account()
    conversation = reply(account, "first", "r1", T0)
    client.force_login(superuser)
    page = client.get(url("change", conversation))
    start = page.context["thread"].start
    assert f"?start={start}" in page.content.decode()
    reply(account, "STOP", "r2", T0 + timedelta(minutes=1))
    live = client.get(url("live", conversation), {"start": str(start)})
    body = live.content.decode()
    assert "first" in body and "STOP — opted out" in body
    assert 'data-opted-out="true"' in body
    assert 'hx-trigger="every 10s"' in body
    conversation.refresh_from_db()
    assert conversation.unread_count == 0


def test_counter_of_the_reply_box_prices_it_on_the_account(client, superuser, make_account):
    account = make_account(balance=Decimal("1.50"), credits_per_segment=Decimal("1"))
    conversation = reply(account, "hi", "r1", T0)
    client.force_login(superuser)
    one = client.post(url("measure", conversation), {"text": "See you Sunday"}).json()
    assert (one["segments"], one["encoding"], one["cost"]) == (1, "GSM-7", "1.00")
    assert (
        "Costs 1.00 credit" in one["cost_text"]
        and "1.50 credits, 0.50 credits after" in one["cost_text"]
    )
    two = client.post(url("measure", conversation), {"text": "x" * 161}).json()
    assert two["segments"] == 2 and two["cost_short"] is True
    assert "not enough credits" in two["cost_text"]


def test_list_says_the_keyword_and_the_opt_out_and_offers_new_replies(
    client, superuser, make_account
):
    account = make_account()
    reply(account, "STOP", "r1", T0)
    reply(account, "hello", "r2", T0, phone="+61412300200")
    client.force_login(superuser)
    listing = client.get(reverse("admin:campaigns_conversation_changelist"))
    page = listing.content.decode()
    assert "STOP — asked to opt out" in page
    assert page.count('<td class="field-optout">Opted out</td>') == 1
    since = listing.context["inbox_since"]
    hint_url = reverse("admin:campaigns_conversation_new_replies")
    assert client.get(hint_url, {"since": since}).content.strip() == b""
    reply(account, "again", "r3", timezone.now() + timedelta(seconds=1))
    hint = client.get(hint_url, {"since": since}).content.decode()
    assert "1 conversation with new replies — refresh" in hint


def test_opt_out_service_notes_the_conversation(superuser, make_account):
    conversation = reply(make_account(), "hi", "r1", T0)
    conversation_opt_out(conversation=conversation, user=superuser, reason="Complained")
    event = OptOutEvent.objects.get()
    assert event.source_reference == f"conversation:{conversation.pk}"
    assert (event.reason, event.created_by) == ("Complained", superuser)


def test_list_search_help_promises_only_what_it_searches(client, superuser):
    client.force_login(superuser)
    page = client.get(reverse("admin:campaigns_conversation_changelist")).content.decode()
    assert "An exact phone number in any format" in page
    assert "provider reference" not in page  # the inbox search is by phone only


def test_migration_backfills_the_last_keyword_of_older_conversations(make_account):
    import importlib

    from django.db import connection

    backfill = importlib.import_module("campaigns.migrations.0007_i14_thread").BACKFILL
    account = make_account()
    reply(account, "STOP", "r1", T0)
    reply(account, "thanks", "r2", T0, phone="+61412300200")
    Conversation.objects.update(last_inbound_action="")  # as made before the field
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    actions = dict(Conversation.objects.values_list("phone", "last_inbound_action"))
    assert actions == {PHONE: "opt_out", "+61412300200": ""}


def test_the_same_reply_form_submitted_twice_sends_once(client, superuser, make_account):
    account = make_account(balance=10)
    conversation = reply(account, "Open Sunday?", "r1", T0)
    client.force_login(superuser)
    key = client.get(url("change", conversation)).context["reply_form"].initial["key"]
    assert key
    first = client.post(url("reply", conversation), {"body": "Yes", "key": key})
    again = client.post(url("reply", conversation), {"body": "Yes", "key": key})
    assert first.status_code == 302
    assert again.status_code == 400 and b"submitted twice" in again.content
    assert Campaign.objects.filter(kind=Campaign.Kind.REPLY).count() == 1
    # A new form (a new key) sends a new reply.
    client.post(url("reply", conversation), {"body": "And also", "key": "other"})
    assert Campaign.objects.filter(kind=Campaign.Kind.REPLY).count() == 2


def test_a_refused_reply_does_not_spend_the_forms_key(client, superuser, make_account):
    from providers.services import credits_top_up

    account = make_account(balance=0)
    conversation = reply(account, "Open Sunday?", "r1", T0)
    client.force_login(superuser)
    refused = client.post(url("reply", conversation), {"body": "Yes", "key": "k1"})
    assert refused.status_code == 400 and b"credits" in refused.content
    credits_top_up(account=account, amount=5, note="top up")
    sent_now = client.post(url("reply", conversation), {"body": "Yes", "key": "k1"})
    assert sent_now.status_code == 302
    assert Campaign.objects.filter(kind=Campaign.Kind.REPLY).count() == 1
