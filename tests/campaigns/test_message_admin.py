"""The Messages and Replies lists: indexed ways in, bounded paging, no internals."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.admin_messages import (
    campaign_messages_export_url,
    campaign_messages_url,
    campaign_replies_url,
)
from campaigns.models import Campaign, InboundMessage, Message
from smsoffice.paging import BoundedPaginator

pytestmark = pytest.mark.django_db

URL = "/admin/campaigns/message/"


@pytest.fixture
def account(make_account):
    return make_account(balance=Decimal("100"))


def _campaign(account, name="Spring sale"):
    return Campaign.objects.create(name=name, account=account, body="Hi", status="completed")


def _messages(campaign, phones, **fields):
    return Message.objects.bulk_create(
        Message(campaign=campaign, phone=phone, body="Hi", **fields) for phone in phones
    )


@pytest.fixture
def logged_in(client, superuser):
    client.force_login(superuser)
    return client


def _listed_phones(response) -> set[str]:
    return {m.phone for m in response.context["cl"].result_list}


@pytest.mark.parametrize(
    "typed", ["0412 300 100", "0412300100", "+61 412-300-100", "(04) 1230 0100"]
)
def test_phone_search_accepts_any_format_a_person_types(logged_in, account, typed):
    campaign = _campaign(account)
    _messages(campaign, ["+61412300100", "+61412300101"])
    response = logged_in.get(URL, {"q": typed})
    assert response.status_code == 200
    assert _listed_phones(response) == {"+61412300100"}


def test_phone_search_is_an_exact_indexed_lookup(logged_in, account):
    _messages(_campaign(account), ["+61412300100"])
    with CaptureQueriesContext(connection) as queries:
        logged_in.get(URL, {"q": "0412 300 100"})
    sql = " ".join(q["sql"] for q in queries.captured_queries if "campaigns_message" in q["sql"])
    assert "+61412300100" in sql or "%s" in sql
    assert "LIKE" not in sql.upper() and "UPPER(" not in sql.upper()


def test_search_for_a_provider_reference(logged_in, account):
    campaign = _campaign(account)
    _messages(campaign, ["+61412300100"], provider_ref="abc-123")
    _messages(campaign, ["+61412300101"], provider_ref="abc-124")
    response = logged_in.get(URL, {"q": "abc-123"})
    assert _listed_phones(response) == {"+61412300100"}


def test_campaign_link_parameter_filters_the_list(logged_in, account):
    spring, autumn = _campaign(account), _campaign(account, "Autumn")
    _messages(spring, ["+61412300100"])
    _messages(autumn, ["+61412300101"])
    response = logged_in.get(campaign_messages_url(spring.pk))
    assert response.status_code == 200
    assert _listed_phones(response) == {"+61412300100"}
    page = response.content.decode()
    # The filter is the admin's autocomplete, preselected with the campaign.
    assert "admin-autocomplete" in page and "Spring sale" in page
    assert campaign_messages_export_url(spring.pk).replace("&", "&amp;") in page
    assert campaign_replies_url(spring.pk) in page


def test_a_bad_campaign_parameter_shows_an_empty_list_not_an_error(logged_in, account):
    _messages(_campaign(account), ["+61412300100"])
    response = logged_in.get(URL, {"campaign__id__exact": "nope"})
    assert response.status_code == 200
    assert _listed_phones(response) == set()


def test_status_filter_only_within_a_campaign(logged_in, account):
    campaign = _campaign(account)
    _messages(campaign, ["+61412300100"], status="delivered")
    _messages(campaign, ["+61412300101"], status="failed")
    page = logged_in.get(URL).content.decode()
    assert "status__exact=" not in page  # no unindexed status filter over every campaign
    response = logged_in.get(URL, {"campaign__id__exact": campaign.pk, "status__exact": "failed"})
    assert _listed_phones(response) == {"+61412300101"}


def test_no_filter_reads_distinct_values_and_no_facets(logged_in, account):
    _messages(_campaign(account), ["+61412300100"], encoding="UCS-2")
    with CaptureQueriesContext(connection) as queries:
        response = logged_in.get(URL, {"_facets": "1"})
    assert response.status_code == 200
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "DISTINCT" not in sql
    assert "encoding" not in response.context["cl"].get_query_string()
    assert not response.context["cl"].has_filters or "encoding" not in response.content.decode()


def test_paging_is_bounded_and_says_so(logged_in, account, monkeypatch):
    paginator = admin.site._registry[Message].paginator
    assert issubclass(paginator, BoundedPaginator)
    monkeypatch.setattr(paginator, "limit", 150)
    _messages(_campaign(account), [f"+614123{i:05d}" for i in range(200)])
    response = logged_in.get(URL)
    assert response.context["cl"].result_count == 150
    assert "More than 150 messages" in response.content.decode()
    last = logged_in.get(URL, {"p": "3"})  # 50 a page
    assert len(last.context["cl"].result_list) == 50
    # Beyond the bound there is no page (the admin redirects to an error marker).
    assert logged_in.get(URL, {"p": "4"}).status_code == 302


def test_message_page_hides_internals_and_offers_no_delete(logged_in, account):
    (message,) = _messages(
        _campaign(account),
        ["+61412300100"],
        provider_ref="abc-1",
        provider_batch_ref="batch-9",
        status="sent",
        sent_at=timezone.now(),
    )
    response = logged_in.get(f"{URL}{message.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "abc-1" in page
    assert "batch-9" not in page and "Claim token" not in page and "claim_token" not in page
    assert "deletelink" not in page
    assert logged_in.post(f"{URL}{message.pk}/delete/").status_code == 403


def test_export_streams_a_campaigns_messages_formula_safe(logged_in, account):
    campaign = _campaign(account)
    _messages(campaign, ["+61412300100"], status="delivered", status_reason="=cmd|' /C calc'!A0")
    _messages(_campaign(account, "Other"), ["+61412300101"])
    response = logged_in.get(campaign_messages_export_url(campaign.pk))
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["Phone", "Contact id", "Status"]
    assert len(rows) == 2
    assert rows[1][0] == "'+61412300100"  # a leading + is neutralised too
    assert rows[1][2] == "Delivered"
    assert rows[1][3].startswith("'=")


def test_export_without_a_campaign_is_a_clear_400(logged_in):
    response = logged_in.get("/admin/campaigns/message/export/")
    assert response.status_code == 400
    assert b"Choose a campaign" in response.content


def test_replies_filter_by_campaign_search_by_phone_and_keyword(logged_in, account):
    campaign = _campaign(account)
    now = timezone.now()
    InboundMessage.objects.create(
        account=account,
        phone="+61412300100",
        body="STOP",
        action="opt_out",
        received_at=now,
        campaign=campaign,
    )
    InboundMessage.objects.create(account=account, phone="+61412300101", body="hi", received_at=now)
    url = "/admin/campaigns/inboundmessage/"
    assert _listed_phones(logged_in.get(campaign_replies_url(campaign.pk))) == {"+61412300100"}
    assert _listed_phones(logged_in.get(url, {"q": "0412 300 101"})) == {"+61412300101"}
    assert _listed_phones(logged_in.get(url, {"action__exact": ""})) == {"+61412300101"}
    response = logged_in.get(url, {"action__exact": "opt_out"})
    assert _listed_phones(response) == {"+61412300100"}
    assert "Opted out (STOP)" in response.content.decode()
