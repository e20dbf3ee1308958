"""Conversation rows: kept with every new reply, newest first, filtered, searched."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from campaigns.inbox import conversation_mark_handled
from campaigns.models import Conversation
from campaigns.reports import inbound_apply
from providers.backends.base import InboundSms

pytestmark = pytest.mark.django_db


def sms(phone: str, body: str, ref: str, hour: int) -> InboundSms:
    return InboundSms(
        from_number=phone,
        body=body,
        received_at=datetime(2024, 1, 2, hour, tzinfo=UTC),
        provider_ref=ref,
    )


def test_each_new_reply_updates_its_conversation_once(make_account):
    account = make_account()
    inbound_apply(account=account, messages=[sms("+447911100100", "hello", "r1", 9)])
    inbound_apply(account=account, messages=[sms("+447911100100", "later", "r2", 11)])
    inbound_apply(account=account, messages=[sms("+447911100100", "later", "r2", 11)])  # retry
    inbound_apply(account=account, messages=[sms("+447911100100", "older", "r0", 8)])  # late

    conversation = Conversation.objects.get()
    assert conversation.phone == "+447911100100"
    assert conversation.unread_count == 3  # the retried webhook is not a new reply
    assert conversation.last_inbound_text == "later"  # a late older reply is not "last"
    assert conversation.last_activity_at == datetime(2024, 1, 2, 11, tzinfo=UTC)


def test_handled_then_a_new_reply_reopens(make_account, superuser):
    account = make_account()
    inbound_apply(account=account, messages=[sms("+447911100100", "hi", "r1", 9)])
    conversation = conversation_mark_handled(
        conversation=Conversation.objects.get(), user=superuser
    )
    assert conversation.handled and conversation.handled_by == superuser
    assert conversation.unread_count == 0
    inbound_apply(account=account, messages=[sms("+447911100100", "again", "r2", 10)])
    conversation.refresh_from_db()
    assert not conversation.handled and conversation.handled_at is None
    assert conversation.unread_count == 1


def test_inbox_is_newest_first_filtered_by_account_and_searched_in_any_format(
    client, superuser, make_account
):
    a, b = make_account(name="Tenant A"), make_account(name="Tenant B")
    inbound_apply(account=a, messages=[sms("+447911100100", "first", "a1", 9)])
    inbound_apply(account=a, messages=[sms("+447911100200", "second", "a2", 10)])
    inbound_apply(account=b, messages=[sms("+447911100300", "other tenant", "b1", 11)])
    client.force_login(superuser)
    url = reverse("admin:campaigns_conversation_changelist")

    page = client.get(url).content.decode()
    assert page.index("other tenant") < page.index("second") < page.index("first")

    only_a = client.get(url, {"account__id__exact": a.pk}).content.decode()
    assert "second" in only_a and "first" in only_a and "other tenant" not in only_a

    found = client.get(url, {"q": "0044 7911-100200"}).content.decode()  # another format
    assert "second" in found and "first" not in found


def test_existing_replies_are_backfilled_by_the_migration(make_account):
    import importlib

    from django.apps import apps

    account = make_account()
    inbound_apply(
        account=account,
        messages=[sms("+447911100100", "one", "r1", 9), sms("+447911100100", "two", "r2", 10)],
    )
    Conversation.objects.all().delete()
    migration = importlib.import_module("campaigns.migrations.0006_i14a_conversations")
    migration.backfill(apps, None)
    conversation = Conversation.objects.get()
    assert (conversation.unread_count, conversation.last_inbound_text) == (2, "two")
