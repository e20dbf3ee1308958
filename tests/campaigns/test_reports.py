"""Applying delivery reports and replies (campaigns.reports)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from campaigns.counters import COUNTER_FIELDS, counters_recount
from campaigns.models import Campaign, InboundMessage, Message
from campaigns.reports import inbound_apply, keyword_action, statuses_apply
from contacts.models import Contact, OptOut
from providers.backends.base import DeliveryStatus, InboundSms, StatusUpdate
from providers.backends.simulator import SimulatorBackend
from providers.models import CreditTransaction

pytestmark = pytest.mark.django_db

DS = DeliveryStatus
MS = Message.Status


class RefundingBackend(SimulatorBackend):
    """A backend whose provider refunds undelivered/expired/rejected messages."""

    refunds_failed = True


BACKENDS = {
    "thesmsworks": "providers.backends.thesmsworks.TheSmsWorksBackend",
    "simulator": "providers.backends.simulator.SimulatorBackend",
    "refunding": "tests.campaigns.test_reports.RefundingBackend",
}


@pytest.fixture(autouse=True)
def _backends():
    with override_settings(SMS_BACKENDS=BACKENDS):
        yield


@pytest.fixture
def account(make_account):
    return make_account(balance=Decimal("100"), backend="thesmsworks")


def make_campaign(account, **fields):
    return Campaign.objects.create(
        name=fields.pop("name", "Promo"), account=account, body="Hi", status="sending", **fields
    )


def make_messages(campaign, n, *, status=MS.SENT, credits="1.50", start=100100, **fields):
    messages = [
        Message(
            campaign=campaign,
            phone=f"+447911{start + i:06d}",
            body="Hi",
            status=status,
            credits=Decimal(credits),
            provider_ref=fields.get("provider_ref", f"p{campaign.pk}-{i}"),
            provider_batch_ref=fields.get("provider_batch_ref", ""),
            sent_at=fields.get("sent_at", datetime(2024, 1, 1, tzinfo=UTC)),
        )
        for i in range(n)
    ]
    Message.objects.bulk_create(messages)
    counters_recount(campaign_id=campaign.pk)
    return list(Message.objects.filter(campaign=campaign).order_by("id"))


def counters(campaign) -> dict[str, int]:
    campaign.refresh_from_db()
    return {field: getattr(campaign, field) for field in COUNTER_FIELDS if getattr(campaign, field)}


def assert_counters_match_messages(campaign):
    stored = counters(campaign)
    counters_recount(campaign_id=campaign.pk)
    assert counters(campaign) == stored


def refunds(account):
    return list(
        CreditTransaction.objects.filter(account=account, kind="refund")
        .order_by("id")
        .values_list("amount", "reference", "note")
    )


def assert_books_balance(account):
    """The balance is the sum of the ledger, and the last row says so too."""
    account.refresh_from_db()
    rows = CreditTransaction.objects.filter(account=account)
    assert account.balance == sum(rows.values_list("amount", flat=True))
    assert rows.order_by("-id").first().balance_after == account.balance


def report(message, status, **fields):
    return StatusUpdate(status=status, provider_ref=message.provider_ref, **fields)


# ------------------------------------------------------------------ statuses
def test_a_delivery_report_moves_sent_to_delivered_and_the_counters(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    counts = statuses_apply(
        account=account, updates=[report(message, DS.DELIVERED, raw_status="DELIVERED")]
    )
    assert counts == {
        "received": 1,
        "applied": 1,
        "raw_kept": 0,
        "unchanged": 0,
        "deferred": 0,
        "unmatched": 0,
        "refunded": 0,
    }
    message.refresh_from_db()
    assert (message.status, message.raw_status) == (MS.DELIVERED, "DELIVERED")
    assert message.status_at is not None
    assert counters(campaign) == {"delivered_count": 1}


def test_a_late_sent_never_undoes_delivered(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    statuses_apply(account=account, updates=[report(message, DS.DELIVERED, raw_status="DELIVERED")])
    counts = statuses_apply(account=account, updates=[report(message, DS.SENT, raw_status="SENT")])
    assert (counts["applied"], counts["unchanged"]) == (0, 1)
    message.refresh_from_db()
    assert (message.status, message.raw_status) == (MS.DELIVERED, "DELIVERED")
    assert counters(campaign) == {"delivered_count": 1}


def test_a_final_status_is_never_overwritten(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    statuses_apply(account=account, updates=[report(message, DS.UNDELIVERED, error_code="5001")])
    statuses_apply(account=account, updates=[report(message, DS.DELIVERED)])
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MS.UNDELIVERED, "5001")
    assert counters(campaign) == {"failed_count": 1}


def test_in_one_call_the_highest_status_wins_and_the_first_final(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    counts = statuses_apply(
        account=account,
        updates=[
            report(message, DS.SENT),
            report(message, DS.EXPIRED, raw_status="EXPIRED"),
            report(message, DS.DELIVERED, raw_status="DELIVERED"),
        ],
    )
    assert (counts["applied"], counts["unchanged"]) == (1, 2)
    message.refresh_from_db()
    assert (message.status, message.raw_status) == (MS.EXPIRED, "EXPIRED")
    assert counters(campaign) == {"failed_count": 1}


def test_the_same_reports_twice_change_nothing_the_second_time(account):
    campaign = make_campaign(account)
    messages = make_messages(campaign, 3)
    updates = [
        report(messages[0], DS.DELIVERED),
        report(messages[1], DS.UNDELIVERED, refunded=True),
        report(messages[2], DS.SENT),
    ]
    first = statuses_apply(account=account, updates=updates)
    after_first = counters(campaign)
    second = statuses_apply(account=account, updates=updates)
    assert (first["applied"], first["refunded"]) == (2, 1)
    assert (second["applied"], second["unchanged"], second["refunded"]) == (0, 3, 0)
    assert (
        counters(campaign)
        == after_first
        == {
            "delivered_count": 1,
            "failed_count": 1,
            "sent_count": 1,
        }
    )
    assert len(refunds(account)) == 1
    assert_counters_match_messages(campaign)


def test_errors_and_raw_values_are_kept(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    statuses_apply(
        account=account,
        updates=[
            report(
                message,
                DS.REJECTED,
                raw_status="REJECTED",
                error_code="5020",
                error_message="Anti-flooding.",
            )
        ],
    )
    message.refresh_from_db()
    assert (message.status, message.raw_status, message.error_code, message.raw_error) == (
        MS.REJECTED,
        "REJECTED",
        "5020",
        "Anti-flooding.",
    )


def test_refunded_reports_refund_the_message_credits_once(account):
    campaign = make_campaign(account)
    messages = make_messages(campaign, 2, credits="1.50")
    updates = [
        report(messages[0], DS.UNDELIVERED, refunded=True),
        report(messages[1], DS.UNDELIVERED, refunded=False),
    ]
    counts = statuses_apply(account=account, updates=updates)
    statuses_apply(account=account, updates=updates)
    account.refresh_from_db()
    assert counts["refunded"] == 1
    assert account.balance == Decimal("101.50")
    [(amount, reference, note)] = refunds(account)
    # Found by the campaign's reference; the note names the call's refund:apply:.
    assert amount == Decimal("1.50") and reference == f"campaign:{campaign.pk}"
    assert "(refund:apply:" in note
    assert note.startswith("Provider refund of 1 message.")
    assert f"messages {messages[0].pk} " in note
    assert_books_balance(account)


def test_a_backend_that_refunds_failures_refunds_undelivered_expired_and_rejected(make_account):
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    messages = make_messages(campaign, 5, credits="2")
    statuses_apply(
        account=account,
        updates=[
            report(messages[0], DS.UNDELIVERED),
            report(messages[1], DS.EXPIRED),
            report(messages[2], DS.REJECTED),
            report(messages[3], DS.FAILED),
            report(messages[4], DS.DELIVERED),
        ],
    )
    account.refresh_from_db()
    assert account.balance == Decimal("16")
    [(amount, _, note)] = refunds(account)
    assert amount == Decimal("6")
    assert note.startswith("Provider refund of 3 messages.")
    assert f"messages {messages[0].pk}-{messages[2].pk} " in note


def test_nothing_is_refunded_for_a_message_that_cost_nothing(make_account):
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1, credits="0")
    counts = statuses_apply(
        account=account, updates=[report(message, DS.UNDELIVERED, refunded=True)]
    )
    message.refresh_from_db()
    account.refresh_from_db()
    assert (message.status, message.status_reason) == (MS.UNDELIVERED, "")
    assert (counts["refunded"], account.balance, refunds(account)) == (0, Decimal("10"), [])


def test_an_unknown_message_was_charged_so_a_provider_refund_refunds_it(make_account):
    # The engine charges ``unknown`` (the provider most likely took it); when
    # the provider then reports it undelivered and refunded, so do we.
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1, status=MS.UNKNOWN, credits="2")
    counts = statuses_apply(
        account=account, updates=[report(message, DS.UNDELIVERED, refunded=True)]
    )
    message.refresh_from_db()
    account.refresh_from_db()
    assert message.status == MS.UNDELIVERED
    assert (counts["refunded"], account.balance) == (1, Decimal("12"))
    assert_books_balance(account)


def test_refunds_of_one_call_are_one_ledger_row_named_on_each_message(make_account):
    account = make_account(balance=Decimal("10"), backend="refunding")
    first = make_campaign(account, name="First")
    second = make_campaign(account, name="Second")
    a = make_messages(first, 3, credits="1.25")
    b = make_messages(second, 2, credits="2", start=200100)
    counts = statuses_apply(
        account=account,
        updates=[
            report(a[0], DS.UNDELIVERED),
            report(a[1], DS.DELIVERED),
            report(a[2], DS.EXPIRED),
            report(b[0], DS.FAILED),  # not refunded by this provider
            report(b[1], DS.REJECTED),
        ],
    )
    assert (counts["applied"], counts["refunded"]) == (5, 3)
    # One row per campaign, each under its campaign's reference.
    [(amount_a, ref_a, note_a), (amount_b, ref_b, note_b)] = refunds(account)
    assert (amount_a, ref_a) == (Decimal("2.50"), f"campaign:{first.pk}")  # 1.25 + 1.25
    assert (amount_b, ref_b) == (Decimal("2.00"), f"campaign:{second.pk}")
    assert note_a.startswith("Provider refund of 2 messages.")
    assert f"messages {a[0].pk}, {a[2].pk} " in note_a
    assert note_b.startswith("Provider refund of 1 message.")
    reference = re.search(r"refund:apply:[0-9a-f]+", note_a).group(0)
    assert reference in note_b  # one call, one refund reference
    reasons = dict(Message.objects.values_list("pk", "status_reason"))
    assert {pk for pk, reason in reasons.items() if reference in reason} == {
        a[0].pk,
        a[2].pk,
        b[1].pk,
    }
    assert_books_balance(account)
    assert account.balance == Decimal("14.50")


def test_the_same_refunded_reports_twice_refund_once_and_the_books_balance(make_account):
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    messages = make_messages(campaign, 40, credits="1.50")
    updates = [
        report(m, [DS.DELIVERED, DS.UNDELIVERED, DS.EXPIRED, DS.SENT][i % 4])
        for i, m in enumerate(messages)
    ]
    first = statuses_apply(account=account, updates=updates)
    second = statuses_apply(account=account, updates=updates + updates[:5])
    assert (first["refunded"], second["refunded"], second["applied"]) == (20, 0, 0)
    refunded = Message.objects.filter(
        campaign=campaign, status__in=[MS.UNDELIVERED, MS.EXPIRED]
    ).values_list("credits", flat=True)
    assert len(refunds(account)) == 1
    assert refunds(account)[0][0] == sum(refunded) == Decimal("30")
    assert_books_balance(account)
    assert account.balance == Decimal("40")


def test_a_refund_that_fails_rolls_the_status_changes_back(make_account, monkeypatch):
    from providers.services import CreditError

    def refuse(**kwargs):
        raise CreditError("the ledger is closed")

    monkeypatch.setattr("campaigns.reports.credits_refund_many", refuse)
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    messages = make_messages(campaign, 2, credits="2")
    with pytest.raises(CreditError):
        statuses_apply(
            account=account,
            updates=[report(messages[0], DS.UNDELIVERED), report(messages[1], DS.DELIVERED)],
        )
    assert set(Message.objects.values_list("status", flat=True)) == {MS.SENT}
    assert counters(campaign) == {"sent_count": 2}
    account.refresh_from_db()
    assert (account.balance, refunds(account)) == (Decimal("10"), [])


def test_refunds_cost_a_fixed_number_of_queries_however_many(
    make_account, django_assert_max_num_queries
):
    account = make_account(balance=Decimal("10"), backend="refunding")
    campaign = make_campaign(account)
    messages = make_messages(campaign, 300, credits="1")
    updates = [
        report(m, DS.UNDELIVERED if i % 10 == 0 else DS.DELIVERED) for i, m in enumerate(messages)
    ]
    # match + lock + 2 status groups + counters + one ledger posting + savepoints.
    with django_assert_max_num_queries(16):
        counts = statuses_apply(account=account, updates=updates)
    assert (counts["applied"], counts["refunded"]) == (300, 30)
    assert_books_balance(account)
    assert account.balance == Decimal("40")


def test_reports_for_unknown_messages_are_counted_not_applied(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1)
    counts = statuses_apply(
        account=account,
        updates=[
            StatusUpdate(status=DS.DELIVERED, provider_ref="nobody"),
            StatusUpdate(status=DS.DELIVERED, reference="m999999"),
            StatusUpdate(status=DS.DELIVERED, reference="not-ours"),
        ],
    )
    assert (counts["unmatched"], counts["applied"]) == (3, 0)
    message.refresh_from_db()
    assert message.status == MS.SENT


def test_another_accounts_messages_are_never_touched(account, make_account):
    other = make_account(backend="thesmsworks")
    [theirs] = make_messages(make_campaign(other), 1, provider_ref="shared-id")
    counts = statuses_apply(
        account=account,
        updates=[
            StatusUpdate(status=DS.DELIVERED, provider_ref="shared-id"),
            StatusUpdate(status=DS.DELIVERED, reference=f"m{theirs.pk}"),
        ],
    )
    assert counts["unmatched"] == 2
    theirs.refresh_from_db()
    assert theirs.status == MS.SENT


def test_our_reference_matches_and_records_the_provider_id(account):
    campaign = make_campaign(account)
    [message] = make_messages(campaign, 1, provider_ref="", provider_batch_ref="b-1")
    statuses_apply(
        account=account,
        updates=[StatusUpdate(status=DS.DELIVERED, provider_ref="x42", reference=f"m{message.pk}")],
    )
    message.refresh_from_db()
    assert (message.status, message.provider_ref) == (MS.DELIVERED, "x42")


def test_a_batch_tag_and_destination_find_the_batch_member(account):
    campaign = make_campaign(account)
    leader, member, other_batch = make_messages(campaign, 3, provider_ref="")
    Message.objects.filter(pk__in=[leader.pk, member.pk]).update(provider_batch_ref="b-1")
    Message.objects.filter(pk=other_batch.pk).update(provider_batch_ref="b-2")
    statuses_apply(
        account=account,
        updates=[
            StatusUpdate(
                status=DS.DELIVERED, provider_ref="x2", reference=f"m{leader.pk}", to=member.phone
            ),
            StatusUpdate(
                status=DS.DELIVERED,
                provider_ref="x3",
                reference=f"m{leader.pk}",
                to=other_batch.phone,
            ),
        ],
    )
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses == {leader.pk: MS.SENT, member.pk: MS.DELIVERED, other_batch.pk: MS.SENT}
    member.refresh_from_db()
    assert member.provider_ref == "x2"


def test_reports_for_messages_not_yet_recorded_as_sent_are_deferred(account):
    campaign = make_campaign(account)
    queued, submitting = make_messages(campaign, 2, status=MS.SUBMITTING, provider_ref="")
    Message.objects.filter(pk=queued.pk).update(status=MS.QUEUED)
    counts = statuses_apply(
        account=account,
        updates=[
            StatusUpdate(status=DS.DELIVERED, reference=f"m{queued.pk}"),
            StatusUpdate(status=DS.DELIVERED, reference=f"m{submitting.pk}"),
        ],
    )
    assert (counts["deferred"], counts["applied"]) == (2, 0)
    assert set(Message.objects.values_list("status", flat=True)) == {MS.QUEUED, MS.SUBMITTING}


def test_cancelled_and_skipped_messages_stay_so(account):
    campaign = make_campaign(account)
    cancelled, skipped = make_messages(campaign, 2)
    Message.objects.filter(pk=cancelled.pk).update(status=MS.CANCELLED)
    Message.objects.filter(pk=skipped.pk).update(status=MS.SKIPPED)
    counts = statuses_apply(
        account=account,
        updates=[report(cancelled, DS.DELIVERED), report(skipped, DS.DELIVERED)],
    )
    assert counts["unchanged"] == 2
    assert sorted(Message.objects.values_list("status", flat=True)) == sorted(
        [MS.CANCELLED, MS.SKIPPED]
    )


def test_provider_side_queued_or_unknown_never_moves_a_message_back(account):
    campaign = make_campaign(account)
    sent, unknown = make_messages(campaign, 2)
    Message.objects.filter(pk=unknown.pk).update(status=MS.UNKNOWN)
    counters_recount(campaign_id=campaign.pk)
    statuses_apply(
        account=account,
        updates=[
            report(sent, DS.QUEUED, raw_status="SCHEDULED"),
            report(sent, DS.UNKNOWN, raw_status="CANCELLED"),
            report(unknown, DS.QUEUED),
        ],
    )
    assert dict(Message.objects.values_list("pk", "status")) == {
        sent.pk: MS.SENT,
        unknown.pk: MS.UNKNOWN,
    }
    statuses_apply(account=account, updates=[report(unknown, DS.SENT)])
    unknown.refresh_from_db()
    assert unknown.status == MS.SENT
    assert counters(campaign) == {"sent_count": 2}


def test_many_reports_are_applied_with_one_update_per_status_group(
    account, django_assert_max_num_queries
):
    campaign = make_campaign(account)
    messages = make_messages(campaign, 300)
    updates = [
        report(m, [DS.DELIVERED, DS.SENT, DS.EXPIRED][i % 3], raw_status="X")
        for i, m in enumerate(messages)
    ]
    # match + lock + 2 status groups + counters + savepoints: no per-message query.
    with django_assert_max_num_queries(10):
        counts = statuses_apply(account=account, updates=updates)
    assert counts["applied"] == 200 and counts["unchanged"] == 100
    assert counters(campaign) == {"delivered_count": 100, "sent_count": 100, "failed_count": 100}
    assert_counters_match_messages(campaign)


# ------------------------------------------------------------------ replies
def reply(body, *, ref="r1", number="+447911100100", at=None, **fields):
    return InboundSms(
        from_number=number,
        body=body,
        received_at=at or datetime(2024, 1, 2, 10, tzinfo=UTC),
        provider_ref=ref,
        **fields,
    )


def test_a_reply_is_stored_and_linked_to_contact_and_latest_campaign_message(account):
    contact = Contact.objects.create(phone="+447911100100", first_name="Ann")
    old = make_campaign(account, name="Old")
    new = make_campaign(account, name="New")
    [old_message] = make_messages(old, 1, sent_at=datetime(2023, 12, 1, tzinfo=UTC))
    [new_message] = make_messages(new, 1, sent_at=datetime(2024, 1, 1, tzinfo=UTC))
    [stored] = inbound_apply(
        account=account, messages=[reply("Thanks!", number="+44 7911 100100", to_number="+4477")]
    )
    assert (stored.phone, stored.body, stored.provider_ref, stored.to_number) == (
        "+447911100100",
        "Thanks!",
        "r1",
        "+4477",
    )
    assert (stored.contact, stored.campaign, stored.in_reply_to) == (contact, new, new_message)
    assert stored.action == ""
    assert old_message.pk != new_message.pk


def test_the_providers_in_reply_to_id_wins(account):
    campaign = make_campaign(account)
    first, second = make_messages(campaign, 2, start=100200)
    # The latest message to the number is ``second``; the provider says ``first``.
    Message.objects.filter(pk=second.pk).update(phone="+447911100100")
    [stored] = inbound_apply(
        account=account,
        messages=[reply("hi", in_reply_to_provider_ref=first.provider_ref)],
    )
    assert stored.in_reply_to_id == first.pk
    [plain] = inbound_apply(account=account, messages=[reply("hi", ref="r2")])
    assert plain.in_reply_to_id == second.pk


def test_a_reply_is_never_linked_to_another_accounts_message(account, make_account):
    other = make_account(backend="thesmsworks")
    make_messages(make_campaign(other), 1, start=100100)
    [stored] = inbound_apply(account=account, messages=[reply("hi")])
    assert (stored.in_reply_to, stored.campaign) == (None, None)


def test_the_same_reply_twice_is_stored_once(account):
    first = inbound_apply(account=account, messages=[reply("STOP")])
    second = inbound_apply(account=account, messages=[reply("STOP"), reply("STOP")])
    assert InboundMessage.objects.count() == 1
    assert {row.pk for row in first + second} == {first[0].pk}
    assert OptOut.objects.count() == 1


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        " Stop. ",
        "STOP!!",
        "'stop'",
        "stopall",
        "Stop All",
        "Unsubscribe",
        "cancel",
        "END",
        "quit",
        "OPTOUT",
        "opt-out",
        "Revoke",
        "\nstop\n",
    ],
)
def test_stop_keywords_opt_the_number_out_at_once(account, text):
    [stored] = inbound_apply(account=account, messages=[reply(text)])
    optout = OptOut.objects.get(phone="+447911100100")
    assert (optout.source, optout.source_reference) == ("keyword", f"inbound:{stored.pk}")
    assert stored.action == "opt_out"


@pytest.mark.parametrize(
    "text", ["please don't stop", "Stop by tomorrow", "STOPPED", "", "cancel my booking", "STOP 2"]
)
def test_sentences_are_not_keywords(account, text):
    [stored] = inbound_apply(account=account, messages=[reply(text)])
    assert stored.action == ""
    assert not OptOut.objects.exists()


@pytest.mark.parametrize("text", ["START", "start", "Unstop", " UNSTOP! "])
def test_start_keywords_opt_the_number_back_in(account, text):
    inbound_apply(account=account, messages=[reply("STOP", ref="stop")])
    [stored] = inbound_apply(account=account, messages=[reply(text)])
    assert stored.action == "opt_in"
    assert not OptOut.objects.filter(phone="+447911100100").exists()


def test_replies_are_handled_in_the_order_received(account):
    t = datetime(2024, 1, 2, 10, tzinfo=UTC)
    rows = inbound_apply(
        account=account,
        messages=[
            reply("START", ref="b", at=t + timedelta(minutes=1)),
            reply("STOP", ref="a", at=t),
        ],
    )
    assert [row.action for row in rows] == ["opt_in", "opt_out"]
    assert not OptOut.objects.exists()


def test_a_second_stop_keeps_the_first_opt_out(account):
    inbound_apply(account=account, messages=[reply("STOP", ref="a")])
    first = OptOut.objects.get()
    inbound_apply(account=account, messages=[reply("quit", ref="b")])
    assert list(OptOut.objects.values_list("pk", "source_reference")) == [
        (first.pk, first.source_reference)
    ]


def test_a_sender_that_is_not_a_number_is_stored_but_not_opted_out(account):
    [stored] = inbound_apply(account=account, messages=[reply("STOP", number="ACME")])
    assert (stored.phone, stored.action) == ("ACME", "")
    assert not OptOut.objects.exists()


@pytest.mark.parametrize(
    ("text", "action"),
    [("STOP", "opt_out"), ("¡stop!", "opt_out"), ("start", "opt_in"), ("stop it", "")],
)
def test_keyword_action(text, action):
    assert keyword_action(text) == action


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_the_same_reports_count_and_refund_once(make_account):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("row locks are exercised on PostgreSQL")
    account = make_account(balance=Decimal("100"), backend="thesmsworks")
    campaign = make_campaign(account)
    messages = make_messages(campaign, 40, credits="1")
    updates = [report(m, DS.UNDELIVERED, refunded=True) for m in messages]

    def apply(_):
        try:
            return statuses_apply(account=account, updates=updates)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(apply, range(4)))
    assert sum(r["applied"] for r in results) == 40
    assert sum(r["refunded"] for r in results) == 40
    account.refresh_from_db()
    assert account.balance == Decimal("140")
    assert counters(campaign) == {"failed_count": 40}
    assert_counters_match_messages(campaign)
